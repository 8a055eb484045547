// keygate's benchmark: one command (npm run bench) that measures, in one run and
// interleaved so machine drift cancels out, the upstream alone, a bare
// http-proxy-3 proxy (the baseline), nginx when installed, keygate in several
// setups, and the Node stacks a team would assemble instead (bench/peers).
//
// Everything listens on 127.0.0.1. The proxy under test is pinned to core 0
// (taskset, when available); upstream, Redis and the load generator share
// the other core. Throughput is measured at saturation with wrk (autocannon
// when wrk is missing), latency at a fixed rate of half the target's
// saturation with an open-loop generator (paced.mjs). Each target's ratio to
// the bare proxy comes from a bare proxy started and warmed with it and
// measured just before and just after it, so drift of the machine's speed
// over minutes cancels out; each figure is the median over the rounds, and
// every round starts each target afresh, so the median spans several
// processes.
// Per request, it also reports the CPU time the proxy process spent (from
// /proc, so independent of how busy the load's core was) and the Redis work:
// commands executed, and calls made (script calls and lookups).
//
// Options (environment): BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_WARMUP (5),
// BENCH_CONNECTIONS (64), BENCH_KEYS (100000), BENCH_ONLY (comma-separated target names),
// BENCH_CPU_PROF (any value: keygate runs with --cpu-prof, profiles in bench/results/profiles).
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
// Node proxies, the bare one too, reach their steady throughput only after several seconds of
// load (V8 compiles the hot path in tiers); after 2 s they were still well below it.
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const KEY_COUNT = Number(process.env.BENCH_KEYS ?? 100_000);
const ONLY = process.env.BENCH_ONLY?.split(",");
const NAMESPACE = "bench:";
// Every Node proxy under test runs with the V8 flags keygate ships with (Dockerfile, npm start),
// so the comparison is between the code, not the runtime settings.
const NODE_FLAGS = ["--max-semi-space-size=32"];
const HUGE = 1_000_000_000;
/** Length of each of the two bare-proxy measurements around a target's (wrk takes whole seconds). */
const BESIDE_SECONDS = Math.max(1, Math.round(SECONDS / 2));

const has = (command) => {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
const pinnable = has("taskset") && cpus().length >= 2;
const pin = (core, argv) =>
  pinnable ? ["taskset", ["-c", String(core), ...argv]] : [argv[0], argv.slice(1)];
const useWrk = has("wrk");
const work = mkdtempSync(join(tmpdir(), "keygate-bench-"));
const children = [];

function freePort() {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Stops a child process (SIGTERM, SIGKILL after 5 s) and resolves once it has exited. */
function stopProcess(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/**
 * Starts a process and resolves when `ready(line)` matches a line of its stdout. Its stdout
 * goes through a pipe to a `cat` on the load's core that writes it to a file, as a container
 * runtime would collect it: the target pays for writing its logs, not for the disk behind them.
 */
function start(name, argv, { env = {}, core = 0, ready = (line) => line.includes("listening") } = {}) {
  const [command, args] = pin(core, argv);
  const logFile = join(work, `${name}.log`);
  const out = openSync(logFile, "w");
  const [sinkCommand, sinkArgs] = pin(1, ["cat"]);
  const sink = spawn(sinkCommand, sinkArgs, { stdio: ["pipe", out, "ignore"] });
  closeSync(out);
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", sink.stdin, "pipe"],
  });
  children.push(child, sink);
  sink.stdin.destroy(); // the target holds the pipe now: when it exits, the sink does too
  const sinkDone = new Promise((resolve) => sink.once("exit", resolve));
  // Stopped once its log is written out, so the next round's process starts with a fresh file.
  const stop = () => stopProcess(child).then(() => sinkDone);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      const line = readFileSync(logFile, "utf8").split("\n").find(ready);
      if (line !== undefined) {
        clearInterval(poll);
        resolve({ pid: child.pid, stop });
      } else if (Date.now() - started > 15_000) {
        clearInterval(poll);
        reject(new Error(`${name} did not start:\n${stderr}`));
      }
    }, 50);
    child.once("exit", (code) => {
      clearInterval(poll);
      reject(new Error(`${name} exited (${code}):\n${stderr}`));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once something accepts connections on the port (for a process that prints nothing). */
async function untilListening(port) {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const accepted = await new Promise((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (accepted) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on port ${port} after 15 s`);
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" })) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time (µs) used so far by a process and its children (nginx's worker), from /proc; NaN elsewhere. */
function cpuMicros(pid) {
  const ticks = (id) => {
    const fields = readFileSync(`/proc/${id}/stat`, "utf8").split(") ")[1].split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  };
  try {
    let total = ticks(pid);
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    for (const kid of kids ? kids.split(" ") : []) total += ticks(kid);
    return (total * 1e6) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

// ---------------------------------------------------------------- fixtures

const hashOf = (key) => createHash("sha256").update(key).digest("hex");
const newKey = () => `rp_${randomBytes(32).toString("hex")}`;

function record(key, i) {
  return {
    id: `key_${String(i).padStart(24, "0")}`,
    hash: hashOf(key),
    prefix: key.slice(0, 10),
    label: `bench ${i}`,
    plan: "bench",
    status: "active",
    createdAt: Date.now(),
  };
}

async function seedRedis(redis, keys) {
  for (let start = 0; start < keys.length; start += 5_000) {
    const pipeline = redis.pipeline();
    keys.slice(start, start + 5_000).forEach((key, offset) => {
      const r = record(key, start + offset);
      pipeline.hset(`${NAMESPACE}key:${r.hash}`, {
        id: r.id,
        prefix: r.prefix,
        label: r.label,
        plan: r.plan,
        status: r.status,
        created_at: r.createdAt,
      });
      pipeline.hset(`${NAMESPACE}ids`, r.id, r.hash);
    });
    await pipeline.exec();
  }
}

function keygateConfig({
  port,
  adminPort,
  store,
  redisUrl,
  windows,
  accessLog = false,
  publicRoute = false,
}) {
  const rule = windows ? `\n    limits:\n      - { name: api, windows: ${windows} }` : "";
  return `
listeners:
  proxy: { host: 127.0.0.1, port: ${port} }
  admin: { host: 127.0.0.1, port: ${adminPort} }
server: { keep_alive_timeout_ms: 60000 }
# Off but for the target that measures it: no other target here writes a line per request.
logging: { level: info, access_log: ${accessLog} }
store:
  type: ${store}
  embedded: { path: ${join(work, `keys-${port}.json`)} }
  redis: { url: "${redisUrl}", namespace: "${NAMESPACE}" }
auth: { failed_attempts: { limit: ${HUGE} } }
# Last-used writes (one script per distinct key per interval) would land in other targets' counts.
# A cache that holds every key for the whole run: with pub/sub invalidation, the TTL only bounds
# staleness when events are lost, and it must exceed a key's time between requests to be useful.
keys: { last_used_flush_ms: 3600000, cache: { size: ${Math.max(100_000, 2 * KEY_COUNT)}, ttl_ms: 3600000 } }
plans:
  bench:${rule || " {}"}
routes:
  - name: api
    match: { path_prefix: / }
    upstream: { url: "${process.env.BENCH_UPSTREAM}" }
    auth: { public: ${publicRoute} }`;
}

function nginxConfig(port, upstreamPort) {
  return `
worker_processes 1;
daemon off;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${work}/nginx-body;
  proxy_temp_path ${work}/nginx-proxy;
  fastcgi_temp_path ${work}/nginx-fastcgi;
  uwsgi_temp_path ${work}/nginx-uwsgi;
  scgi_temp_path ${work}/nginx-scgi;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}`;
}

// ---------------------------------------------------------------- load

function writeHeaderFile(name, keys) {
  const file = join(work, `${name}.headers`);
  writeFileSync(file, `${keys.map((k) => `Bearer ${k}`).join("\n")}\n`);
  return file;
}

const WRK_SCRIPT = `
local values = {}
init = function(args)
  for line in io.lines(args[1]) do values[#values + 1] = line end
end
request = function()
  return wrk.format(nil, nil, { ["Authorization"] = values[math.random(#values)] })
end`;

/** Saturation throughput (requests/s) and latency percentiles, from wrk or autocannon. */
async function saturate(url, headerFile, seconds) {
  if (useWrk) {
    const script = join(work, "random-header.lua");
    writeFileSync(script, WRK_SCRIPT);
    const args = [
      "wrk",
      "-t1",
      `-c${CONNECTIONS}`,
      `-d${seconds}s`,
      "--latency",
      "-s",
      script,
      url,
      "--",
      headerFile,
    ];
    const [command, rest] = pin(1, args);
    const out = execFileSync(command, rest, { encoding: "utf8" });
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
    const p = (q) => toMs(new RegExp(`\\s${q}%\\s+([\\d.]+\\w+)`).exec(out)?.[1]);
    const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
    const total = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const errors = socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
    return checked(url, { rps, total, p99: p(99), non2xx, errors });
  }
  return checked(url, await autocannon(url, headerFile, seconds));
}

/** A measurement whose requests failed (refused, reset, timed out) is not a sample: stop the run. */
function checked(url, result) {
  if (result.errors > 0.001 * Math.max(1, result.total))
    throw new Error(`${url}: ${result.errors} of ${result.total} requests failed`);
  return result;
}

function toMs(text) {
  if (!text) return Number.NaN;
  const value = Number.parseFloat(text);
  if (text.endsWith("us")) return value / 1000;
  if (text.endsWith("ms")) return value;
  if (text.endsWith("s")) return value * 1000;
  return value;
}

/** Runs a load script of bench/ on the load's core; its last stdout line is its JSON result. */
function runLoad(script, args) {
  const [command, rest] = pin(1, [process.execPath, join(here, script), ...args.map(String)]);
  const out = execFileSync(command, rest, { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop());
}

/** Closed-loop load with autocannon: as fast as possible, or `sequentialAmount` requests in key order. */
const autocannon = (url, headerFile, seconds, sequentialAmount = 0) =>
  runLoad("load.mjs", [url, seconds, CONNECTIONS, headerFile, sequentialAmount]);

/** Latency percentiles under open-loop load at a fixed rate (paced.mjs). */
const paced = (url, headerFile, seconds, rate) =>
  checked(url, runLoad("paced.mjs", [url, rate, seconds, CONNECTIONS, headerFile]));

// ---------------------------------------------------------------- redis accounting

/**
 * Redis work so far: every command executed (`commands`, including those run
 * inside Lua scripts) and the calls clients made on the request path
 * (`calls`: script calls and key lookups, the only request-path commands of
 * every target here).
 */
const TOP_LEVEL = new Set(["evalsha", "eval", "evalsha_ro", "eval_ro", "hgetall"]);
async function commandStats(redis) {
  const info = await redis.info("commandstats");
  let commands = 0;
  let requestPathCalls = 0;
  for (const [, name, calls] of info.matchAll(/cmdstat_(\w+):calls=(\d+)/g)) {
    if (name === "info") continue;
    commands += Number(calls);
    if (TOP_LEVEL.has(name)) requestPathCalls += Number(calls);
  }
  return { commands, calls: requestPathCalls };
}

// ---------------------------------------------------------------- main

async function main() {
  // The runner itself (and everything it starts without a core) stays off the proxy's core.
  if (pinnable && !process.env.BENCH_PINNED) {
    const child = spawn("taskset", ["-c", "1", process.execPath, ...process.argv.slice(1)], {
      stdio: "inherit",
      env: { ...process.env, BENCH_PINNED: "1" },
    });
    child.on("exit", (code) => process.exit(code ?? 1));
    return "delegated";
  }
  const redisPort = await freePort();
  const redisDir = join(work, "redis");
  mkdirSync(redisDir);
  await start(
    "redis",
    [
      "redis-server",
      "--port",
      String(redisPort),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      redisDir,
    ],
    {
      core: 1,
      ready: (line) => line.includes("Ready to accept connections"),
    },
  );
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const redis = new Redis(redisUrl);
  // A failing command rejects its call; a failed run stops Redis under this client, which need not say so.
  redis.on("error", () => {});

  const upstreamPort = await freePort();
  const upstream = await start("upstream", [process.execPath, join(here, "upstream.mjs")], {
    env: { PORT: String(upstreamPort) },
    core: 1,
  });
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  process.env.BENCH_UPSTREAM = upstreamUrl;

  const oneKey = newKey();
  const manyKeys = Array.from({ length: KEY_COUNT }, newKey);
  const limitedKey = newKey();
  await seedRedis(redis, [oneKey, limitedKey, ...manyKeys]);
  const headers = {
    none: writeHeaderFile("none", [""]),
    one: writeHeaderFile("one", [oneKey]),
    many: writeHeaderFile("many", manyKeys),
    unknown: writeHeaderFile("unknown", [newKey()]),
    limited: writeHeaderFile("limited", [limitedKey]),
  };

  const keygate = async (name, options) => {
    const port = await freePort();
    const adminPort = await freePort();
    const file = join(work, `${name}.yaml`);
    writeFileSync(file, keygateConfig({ port, adminPort, redisUrl, ...options }));
    if (options.store === "embedded") {
      writeFileSync(
        join(work, `keys-${port}.json`),
        JSON.stringify({ version: 1, keys: [record(oneKey, 0)], usage: {} }),
      );
    }
    const argv = [
      process.execPath,
      ...NODE_FLAGS,
      ...(process.env.BENCH_CPU_PROF
        ? ["--cpu-prof", `--cpu-prof-dir=${join(root, "bench/results/profiles")}`]
        : []),
      join(root, "dist/cli/main.js"),
      "serve",
      "--config",
      file,
    ];
    const started = await start(name, argv, { ready: (line) => line.includes("keygate listening") });
    return { url: `http://127.0.0.1:${port}/`, ...started };
  };
  const node = async (name, script) => {
    const port = await freePort();
    const started = await start(name, [process.execPath, ...NODE_FLAGS, join(here, script)], {
      env: { PORT: String(port), UPSTREAM: upstreamUrl, REDIS_URL: redisUrl, NAMESPACE: NAMESPACE },
    });
    return { url: `http://127.0.0.1:${port}/`, ...started };
  };

  const targets = [
    { name: "upstream alone", url: `${upstreamUrl}/`, pid: upstream.pid, headers: headers.none },
    {
      name: "bare http-proxy-3",
      baseline: true,
      start: () => node("bare", "bare-proxy.mjs"),
      headers: headers.none,
    },
  ];
  if (has("nginx")) {
    targets.push({
      name: "nginx proxy_pass",
      start: async () => {
        const port = await freePort();
        const conf = join(work, "nginx.conf");
        writeFileSync(conf, nginxConfig(port, upstreamPort));
        const [command, args] = pin(0, ["nginx", "-c", conf, "-p", work]);
        const master = spawn(command, args, { stdio: "ignore" });
        children.push(master);
        await untilListening(port);
        return { url: `http://127.0.0.1:${port}/`, pid: master.pid, stop: () => stopProcess(master) };
      },
      headers: headers.none,
    });
  }
  targets.push(
    {
      name: "keygate embedded, 1 key, 1 window",
      start: () => keygate("kg-embedded", { store: "embedded", windows: `{ minute: ${HUGE} }` }),
      headers: headers.one,
    },
    {
      name: "keygate, public route (no key, no limit)",
      start: () => keygate("kg-public", { store: "redis", publicRoute: true }),
      headers: headers.none,
    },
    {
      name: "keygate redis, 1 key, 1 window",
      redis: true,
      start: () => keygate("kg-redis", { store: "redis", windows: `{ minute: ${HUGE} }` }),
      headers: headers.one,
    },
    {
      name: "keygate redis, 1 key, 1 window, access log on",
      redis: true,
      start: () =>
        keygate("kg-redis-log", { store: "redis", windows: `{ minute: ${HUGE} }`, accessLog: true }),
      headers: headers.one,
    },
    {
      name: `keygate redis, ${KEY_COUNT} keys, 1 window`,
      redis: true,
      start: () => keygate("kg-redis-many", { store: "redis", windows: `{ minute: ${HUGE} }` }),
      headers: headers.many,
    },
    {
      name: "keygate redis, 1 key, 3 windows",
      redis: true,
      start: () =>
        keygate("kg-redis-3w", {
          store: "redis",
          windows: `{ minute: ${HUGE}, hour: ${HUGE}, day: ${HUGE} }`,
        }),
      headers: headers.one,
    },
    {
      name: "keygate redis, unknown key (403)",
      redis: true,
      start: () => keygate("kg-unknown", { store: "redis", windows: `{ minute: ${HUGE} }` }),
      headers: headers.unknown,
    },
    {
      name: "keygate redis, over limit (429)",
      redis: true,
      start: () => keygate("kg-429", { store: "redis", windows: "{ day: 1 }" }),
      headers: headers.limited,
    },
    {
      name: "fastify peer",
      redis: true,
      start: () => node("fastify", "peers/fastify.mjs"),
      headers: headers.one,
    },
    {
      name: "express peer",
      redis: true,
      start: () => node("express", "peers/express.mjs"),
      headers: headers.one,
    },
  );
  // The many-keys target is measured after its cache warmed: every key once, in order.
  const manyTarget = targets.find((t) => t.headers === headers.many);
  if (manyTarget) manyTarget.prewarm = headers.many;
  const selected = targets.filter((t) => !ONLY || t.baseline || ONLY.some((o) => t.name.includes(o)));
  // The bare proxy is measured beside the other targets only.
  if (selected.length < 2) throw new Error(`BENCH_ONLY=${process.env.BENCH_ONLY} selects no target`);

  const samples = new Map(
    selected.map((t) => [
      t.name,
      {
        rps: [],
        ratio: [],
        p99: [],
        lat50: [],
        lat99: [],
        cpu: [],
        busy: [],
        cmds: [],
        calls: [],
        non2xx: [],
      },
    ]),
  );
  /** One saturation measurement of a running target, with its CPU and Redis work per request. */
  const measure = async (target, seconds) => {
    const before = target.redis ? await commandStats(redis) : undefined;
    const cpuBefore = cpuMicros(target.pid);
    const sat = await saturate(target.url, target.headers, seconds);
    const cpuAfter = cpuMicros(target.pid);
    const after = target.redis ? await commandStats(redis) : undefined;
    // The CPU and Redis windows also hold wrk's start and exit, when no request is in flight.
    const requests = Math.max(1, sat.total);
    const s = samples.get(target.name);
    const cpuPerRequest = (cpuAfter - cpuBefore) / requests;
    s.cpu.push(cpuPerRequest);
    s.busy.push((cpuPerRequest * sat.rps) / 1e6);
    s.rps.push(sat.rps);
    s.p99.push(sat.p99);
    s.non2xx.push(sat.non2xx / requests);
    if (before && after) {
      s.cmds.push((after.commands - before.commands) / requests);
      s.calls.push((after.calls - before.calls) / requests);
    }
    return sat.rps;
  };
  const latency = async (target) => {
    const s = samples.get(target.name);
    const rate = Math.round(median(s.rps) / 2);
    const lat = await paced(target.url, target.headers, SECONDS, rate);
    s.lat50.push(lat.p50);
    s.lat99.push(lat.p99);
    return `p99 ${lat.p99} ms @ ${rate} req/s`;
  };
  const baselineTarget = selected.find((t) => t.baseline);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of selected) {
      if (target.baseline) continue;
      // Machine speed drifts by tens of percent within minutes here (a virtual machine's
      // neighbours), so each target is compared with a bare proxy started and warmed with it and
      // measured just before and just after it, idle while the target is loaded. Both start
      // afresh for every target and round: two processes of one build can settle ~10 % apart, so
      // a median should come from several of them.
      Object.assign(baselineTarget, await baselineTarget.start());
      if (target.start) Object.assign(target, await target.start());
      if (target.prewarm) await autocannon(target.url, target.prewarm, 0, KEY_COUNT);
      await saturate(baselineTarget.url, baselineTarget.headers, WARMUP);
      await saturate(target.url, target.headers, WARMUP);
      const bareBefore = await measure(baselineTarget, BESIDE_SECONDS);
      const rps = await measure(target, SECONDS);
      const bareAfter = await measure(baselineTarget, BESIDE_SECONDS);
      await baselineTarget.stop();
      const ratio = rps / ((bareBefore + bareAfter) / 2);
      samples.get(target.name).ratio.push(ratio);
      const lat = await latency(target);
      await target.stop?.();
      process.stderr.write(
        `round ${round}/${ROUNDS}  ${target.name.padEnd(40)} ${Math.round(rps)} req/s = ${ratio.toFixed(2)} x bare, ${lat}\n`,
      );
    }
    Object.assign(baselineTarget, await baselineTarget.start());
    await saturate(baselineTarget.url, baselineTarget.headers, WARMUP);
    const lat = await latency(baselineTarget);
    await baselineTarget.stop();
    process.stderr.write(`round ${round}/${ROUNDS}  ${baselineTarget.name.padEnd(40)} ${lat}\n`);
  }

  const rows = selected.map((t) => {
    const s = samples.get(t.name);
    return {
      target: t.name,
      rps: Math.round(median(s.rps)),
      // The median of the ratios to the bare proxy measured beside the target, not a ratio of medians.
      ratio: t.baseline ? 1 : Number(median(s.ratio).toFixed(2)),
      p50_ms: round2(median(s.lat50)),
      p99_ms: round2(median(s.lat99)),
      sat_p99_ms: round2(median(s.p99)),
      cpu_us_per_req: round2(median(s.cpu)),
      proxy_core_busy: round2(median(s.busy)),
      redis_cmds_per_req: s.cmds.length ? round2(median(s.cmds)) : null,
      redis_calls_per_req: s.calls.length ? round2(median(s.calls)) : null,
      non2xx_share: round2(median(s.non2xx)),
    };
  });
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      node: process.version,
      pinned: pinnable,
      loader: useWrk ? "wrk" : "autocannon",
    },
    settings: { rounds: ROUNDS, seconds: SECONDS, warmup: WARMUP, connections: CONNECTIONS, keys: KEY_COUNT },
    rows,
  };
  mkdirSync(join(here, "results"), { recursive: true });
  const out = join(here, "results", `bench-${result.date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  printTable(result);
  process.stdout.write(`\nwritten to ${out}\n`);
  await redis.quit();
}

function median(values) {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
const round2 = (n) => (Number.isNaN(n) ? null : Math.round(n * 100) / 100);

function printTable({ machine, settings, rows }) {
  process.stdout.write(
    `\n${machine.model} x${machine.cpus}, Node ${machine.node}, proxy pinned: ${machine.pinned}, load: ${machine.loader}, ` +
      `${settings.rounds} rounds x ${settings.seconds}s, ${settings.connections} connections\n\n`,
  );
  const header = [
    "target",
    "req/s",
    "x bare",
    "p50 ms @½",
    "p99 ms @½",
    "p99 ms sat",
    "CPU µs/req",
    "core busy",
    "Redis cmds/req",
    "Redis calls/req",
    "non-2xx share",
  ];
  const lines = rows.map((r) => [
    r.target,
    r.rps,
    r.ratio,
    r.p50_ms,
    r.p99_ms,
    r.sat_p99_ms,
    r.cpu_us_per_req ?? "-",
    r.proxy_core_busy ?? "-",
    r.redis_cmds_per_req ?? "-",
    r.redis_calls_per_req ?? "-",
    r.non2xx_share,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => String(l[i]).length)));
  const fmt = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(" | ")} |\n`;
  process.stdout.write(fmt(header));
  process.stdout.write(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|\n`);
  for (const line of lines) process.stdout.write(fmt(line));
}

function cleanup() {
  for (const child of children) child.kill("SIGTERM");
  try {
    execFileSync("sh", ["-c", `[ -f ${work}/nginx.pid ] && kill $(cat ${work}/nginx.pid) || true`]);
  } catch {}
  setTimeout(() => rmSync(work, { recursive: true, force: true }), 500).unref();
}

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
]) {
  process.on(signal, () => {
    cleanup();
    process.exit(code);
  });
}
main().then(
  (outcome) => {
    if (outcome === "delegated") return;
    cleanup();
    setTimeout(() => process.exit(0), 600);
  },
  (error) => {
    process.stderr.write(`bench failed: ${error.stack ?? error}\n`);
    cleanup();
    setTimeout(() => process.exit(1), 600);
  },
);
