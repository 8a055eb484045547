// What bench/run.mjs (the benchmark) and bench/ab.mjs (build against build) share: starting
// processes pinned to a core with their logs collected, the fixtures (keys, Redis records,
// keygate's configuration), the load generators and the per-request accounting (CPU, Redis).
//
// Everything listens on 127.0.0.1. The process under test goes on core 0 (taskset, when
// available); what it talks to and the load go on core 1.
import { execFile, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { constants, cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, "..");
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
export const NAMESPACE = "bench:";
// Every Node proxy under test runs with the V8 flags keygate ships with (Dockerfile, npm start),
// so the comparison is between the code, not the runtime settings.
export const NODE_FLAGS = ["--max-semi-space-size=32"];
export const HUGE = 1_000_000_000;

export const has = (command) => {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
export const pinnable = has("taskset") && cpus().length >= 2;
export const pin = (core, argv) =>
  pinnable ? ["taskset", ["-c", String(core), ...argv]] : [argv[0], argv.slice(1)];
export const useWrk = has("wrk");
export const work = mkdtempSync(join(tmpdir(), "keygate-bench-"));
export const children = [];

export function freePort() {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Stops a child process (SIGTERM, SIGKILL after 5 s) and resolves once it has exited. */
export function stopProcess(child) {
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
export function start(name, argv, { env = {}, core = 0, ready = (line) => line.includes("listening") } = {}) {
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

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once something accepts connections on the port (for a process that prints nothing). */
export async function untilListening(port) {
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
export function cpuMicros(pid) {
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
export const newKey = () => `rp_${randomBytes(32).toString("hex")}`;

export function record(key, i) {
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

export async function seedRedis(redis, keys) {
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

export function keygateConfig({
  port,
  adminPort,
  store,
  redisUrl,
  upstreamUrl,
  cacheSize = 100_000,
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
keys: { last_used_flush_ms: 3600000, cache: { size: ${cacheSize}, ttl_ms: 3600000 } }
plans:
  bench:${rule || " {}"}
routes:
  - name: api
    match: { path_prefix: / }
    upstream: { url: "${upstreamUrl}" }
    auth: { public: ${publicRoute} }`;
}

// ---------------------------------------------------------------- load

export function writeHeaderFile(name, keys) {
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

/**
 * Runs a program on a core (a load generator on the load's, by default) and resolves with its
 * stdout. Asynchronously, so a signal stops the run at once; `cleanup` aborts whatever is still
 * running.
 */
const stopping = new AbortController();
async function runOnCore(argv, core = 1) {
  const [command, rest] = pin(core, argv);
  const { stdout } = await promisify(execFile)(command, rest, {
    encoding: "utf8",
    signal: stopping.signal,
  });
  return stdout;
}

/** Saturation throughput (requests/s) and latency percentiles, from wrk or autocannon. */
export async function saturate(url, headerFile, seconds) {
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
    const out = await runOnCore(args);
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

/** Runs a script of bench/ (on the load's core by default); its last stdout line is its JSON result. */
async function runLoad(script, args, core = 1) {
  const out = await runOnCore([process.execPath, join(here, script), ...args.map(String)], core);
  return JSON.parse(out.trim().split("\n").pop());
}

/** Closed-loop load with autocannon: as fast as possible, or `sequentialAmount` requests in key order. */
export const autocannon = (url, headerFile, seconds, sequentialAmount = 0) =>
  runLoad("load.mjs", [url, seconds, CONNECTIONS, headerFile, sequentialAmount]);

/** Latency percentiles under open-loop load at a fixed rate (paced.mjs). */
export const paced = async (url, headerFile, seconds, rate) =>
  checked(url, await runLoad("paced.mjs", [url, rate, seconds, CONNECTIONS, headerFile]));

// ---------------------------------------------------------------- redis accounting

/**
 * CPU µs one Redis round trip costs a process on the proxy's core, PINGs one at a time and
 * CONNECTIONS in flight: `{ lone_us, together_us }`, each a figure per repeat (round-trip.mjs).
 */
export const redisRoundTrip = (redisUrl) => runLoad("round-trip.mjs", [redisUrl, CONNECTIONS], 0);

/**
 * Redis work so far: every command executed (`commands`, including those run
 * inside Lua scripts) and the calls clients made on the request path
 * (`calls`: the commands named in `callNames`; by default script calls and key
 * lookups, the only request-path calls of keygate and the peers, whose
 * scripts run INCR inside them).
 */
const REQUEST_PATH_CALLS = ["evalsha", "eval", "evalsha_ro", "eval_ro", "hgetall"];
export async function commandStats(redis, callNames = REQUEST_PATH_CALLS) {
  const info = await redis.info("commandstats");
  let commands = 0;
  let requestPathCalls = 0;
  for (const [, name, calls] of info.matchAll(/cmdstat_(\w+):calls=(\d+)/g)) {
    if (name === "info") continue;
    commands += Number(calls);
    if (callNames.includes(name)) requestPathCalls += Number(calls);
  }
  return { commands, calls: requestPathCalls };
}

// ---------------------------------------------------------------- services

/** A Redis of its own on a free port (no persistence), on the load's core. Returns its URL. */
export async function startRedis() {
  const port = await freePort();
  const dir = join(work, `redis-${port}`);
  mkdirSync(dir);
  await start(
    "redis",
    [
      "redis-server",
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ],
    { core: 1, ready: (line) => line.includes("Ready to accept connections") },
  );
  return `redis://127.0.0.1:${port}`;
}

/** The upstream (upstream.mjs) on the load's core. */
export async function startUpstream() {
  const port = await freePort();
  const started = await start("upstream", [process.execPath, join(here, "upstream.mjs")], {
    env: { PORT: String(port) },
    core: 1,
  });
  return { url: `http://127.0.0.1:${port}`, port, ...started };
}

/** A keygate build (`dist` of this checkout by default) serving `config`, on the proxy's core. */
export async function startKeygate(name, config, { build = join(root, "dist"), flags = [] } = {}) {
  const file = join(work, `${name}.yaml`);
  writeFileSync(file, config);
  const argv = [
    process.execPath,
    ...NODE_FLAGS,
    ...flags,
    join(build, "cli/main.js"),
    "serve",
    "--config",
    file,
  ];
  return start(name, argv, { ready: (line) => line.includes("keygate listening") });
}

/** Stops every process started here and removes the working directory. */
function cleanup() {
  stopping.abort();
  for (const child of children) child.kill("SIGTERM");
  try {
    execFileSync("sh", ["-c", `[ -f ${work}/nginx.pid ] && kill $(cat ${work}/nginx.pid) || true`]);
  } catch {}
  setTimeout(() => rmSync(work, { recursive: true, force: true }), 500).unref();
}

/** Runs `main` as the entry point: pinned off the proxy's core, cleaned up however it ends. */
export function runMain(main) {
  // The runner itself (and everything it starts without a core) stays off the proxy's core.
  if (pinnable && !process.env.BENCH_PINNED) {
    const child = spawn("taskset", ["-c", "1", process.execPath, ...process.argv.slice(1)], {
      stdio: "inherit",
      env: { ...process.env, BENCH_PINNED: "1" },
    });
    // This process only waits: the child has its own working directory.
    rmSync(work, { recursive: true, force: true });
    // A signal sent to this process alone (not its group) must still stop the run.
    for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
    child.on("exit", (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
    return;
  }
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ]) {
    process.on(signal, () => {
      cleanup();
      // Exits once cleanup had time to remove the working directory (it waits for the processes).
      setTimeout(() => process.exit(code), 600);
    });
  }
  main().then(
    () => {
      cleanup();
      setTimeout(() => process.exit(0), 600);
    },
    (error) => {
      // Interrupted: the load generator that was running was stopped on purpose.
      if (!stopping.signal.aborted) process.stderr.write(`bench failed: ${error.stack ?? error}\n`);
      cleanup();
      setTimeout(() => process.exit(1), 600);
    },
  );
}

export function median(values) {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
