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
// over minutes cancels out. The p99 latency it adds comes from 1 s slices of
// the target and of the bare proxy at the same rate, in turn (the median of
// the pairs' differences). The many-keys target is also compared with one key
// on the same process, just before and just after it. Each figure is
// the median over the rounds, and every round starts each target afresh, so
// the median spans several processes.
// Per request, it also reports the CPU time the proxy process spent (from
// /proc, so independent of how busy the load's core was), at saturation and
// over the latency slices, and the Redis work: commands executed, and calls
// made (script calls and lookups). Each round first measures what one Redis
// round trip costs a process on the proxy's core by itself, one at a time
// and with many in flight (round-trip.mjs).
//
// Options (environment): BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_WARMUP (5),
// BENCH_CONNECTIONS (64), BENCH_KEYS (100000), BENCH_LATENCY_SLICES (6 per target and round),
// BENCH_ONLY (a regular expression: only the targets whose names it matches), BENCH_CPU_PROF
// (any value: keygate runs with --cpu-prof, profiles in bench/results/profiles).
// Build against build: bench/ab.mjs.
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import {
  autocannon,
  CONNECTIONS,
  children,
  commandStats,
  cpuMicros,
  freePort,
  HUGE,
  has,
  here,
  keygateConfig,
  median,
  NAMESPACE,
  NODE_FLAGS,
  newKey,
  paced,
  pin,
  pinnable,
  record,
  redisRoundTrip,
  root,
  runMain,
  saturate,
  seedRedis,
  sleep,
  start,
  startKeygate,
  startRedis,
  startUpstream,
  stopProcess,
  untilListening,
  useWrk,
  work,
  writeHeaderFile,
} from "./harness.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
// Node proxies, the bare one too, reach their steady throughput only after several seconds of
// load (V8 compiles the hot path in tiers); after 2 s they were still well below it.
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5);
const KEY_COUNT = Number(process.env.BENCH_KEYS ?? 100_000);
const ONLY = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;
/** Length of each of the two bare-proxy measurements around a target's (wrk takes whole seconds). */
const BESIDE_SECONDS = Math.max(1, Math.round(SECONDS / 2));
// Latency comes from short slices, the target's and the bare proxy's in turn: here the machine
// stalls for several milliseconds at random, a few times a second, so the p99 of any one run
// is mostly how many stalls it caught. Slices side by side catch alike, and the median over
// their paired differences is what the target adds (see `latency`).
const LATENCY_SLICES = Number(process.env.BENCH_LATENCY_SLICES ?? 6);
const LATENCY_SLICE_SECONDS = 1;
// Above this share of its saturation the bare proxy's p99 is its own queueing (a run saw it
// 150 ms at 0.71), so only the paths faster than bare by more than a fifth go unpaired.
const BARE_LOAD_LIMIT = 0.6;

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

// ---------------------------------------------------------------- main

async function main() {
  const redisUrl = await startRedis();
  const redis = new Redis(redisUrl);
  // A failing command rejects its call; a failed run stops Redis under this client, which need not say so.
  redis.on("error", () => {});
  const upstream = await startUpstream();
  const upstreamUrl = upstream.url;

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
    if (options.store === "embedded") {
      writeFileSync(
        join(work, `keys-${port}.json`),
        JSON.stringify({ version: 1, keys: [record(oneKey, 0)], usage: {} }),
      );
    }
    const config = keygateConfig({
      port,
      adminPort,
      redisUrl,
      upstreamUrl,
      cacheSize: Math.max(100_000, 2 * KEY_COUNT),
      ...options,
    });
    const flags = process.env.BENCH_CPU_PROF
      ? ["--cpu-prof", `--cpu-prof-dir=${join(root, "bench/results/profiles")}`]
      : [];
    const started = await startKeygate(name, config, { flags });
    return { url: `http://127.0.0.1:${port}/`, ...started };
  };
  const node = async (name, script, env = {}) => {
    const port = await freePort();
    const started = await start(name, [process.execPath, ...NODE_FLAGS, join(here, script)], {
      env: { PORT: String(port), UPSTREAM: upstreamUrl, REDIS_URL: redisUrl, NAMESPACE: NAMESPACE, ...env },
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
    {
      // The least an exact limit shared by instances costs: a request goes upstream once one Redis
      // round trip (shared by the requests of its turn) has answered. The rows with `overFloor` are
      // also paired with it for latency.
      name: "bare http-proxy-3 + 1 Redis round trip",
      floor: true,
      redis: true,
      callNames: ["incrby"],
      start: () => node("floor", "bare-proxy.mjs", { ROUND_TRIP: "1" }),
      headers: headers.none,
    },
  ];
  if (has("nginx")) {
    targets.push({
      name: "nginx proxy_pass",
      start: async () => {
        const port = await freePort();
        const conf = join(work, "nginx.conf");
        writeFileSync(conf, nginxConfig(port, upstream.port));
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
      overFloor: true,
      start: () => keygate("kg-redis", { store: "redis", windows: `{ minute: ${HUGE} }` }),
      headers: headers.one,
    },
    {
      name: "keygate redis, 1 key, 1 window, access log on",
      redis: true,
      overFloor: true,
      start: () =>
        keygate("kg-redis-log", { store: "redis", windows: `{ minute: ${HUGE} }`, accessLog: true }),
      headers: headers.one,
    },
    {
      name: `keygate redis, ${KEY_COUNT} keys, 1 window`,
      redis: true,
      overFloor: true,
      start: () => keygate("kg-redis-many", { store: "redis", windows: `{ minute: ${HUGE} }` }),
      headers: headers.many,
      // Measured after its cache warmed (every key once, in order), and against one key on the
      // same process just before and just after: processes of one build settle up to 15 % apart,
      // more than the 5 % this comparison is about.
      prewarm: headers.many,
      versus: headers.one,
    },
    {
      name: "keygate redis, 1 key, 3 windows",
      redis: true,
      overFloor: true,
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
  const chosen = (t) => !ONLY || t.baseline || ONLY.test(t.name);
  // The floor comes along with any row that is compared with it.
  const selected = targets.filter(
    (t) => chosen(t) || (t.floor && targets.some((o) => o.overFloor && chosen(o))),
  );
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
        added99: [],
        overFloor99: [],
        versusOne: [],
        cpu: [],
        cpuHalf: [],
        busy: [],
        cmds: [],
        calls: [],
        non2xx: [],
      },
    ]),
  );
  /** One saturation measurement of a running target, with its CPU and Redis work per request. */
  const measure = async (target, seconds) => {
    const before = target.redis ? await commandStats(redis, target.callNames) : undefined;
    const cpuBefore = cpuMicros(target.pid);
    const sat = await saturate(target.url, target.headers, seconds);
    const cpuAfter = cpuMicros(target.pid);
    const after = target.redis ? await commandStats(redis, target.callNames) : undefined;
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
  /**
   * Latency at half the target's saturation, in slices. Each slice of the target is paired with
   * one of every reference in `refs` (the bare proxy, and the floor for the rows compared with
   * it) at the same rate, in alternating order, for what the target adds to each. A reference
   * is left out where that rate is above BARE_LOAD_LIMIT of its own saturation (`rps`): near it,
   * its latency is queueing, not cost. With both, the floor's slices count for what the floor
   * adds to the bare proxy too, at this rate: its own half load is mostly too high a rate for
   * the bare proxy, since sharing a round trip per turn makes it faster than the bare proxy.
   */
  const latency = async (target, refs = []) => {
    const s = samples.get(target.name);
    const rate = Math.round(median(s.rps) / 2);
    const beside = refs.filter((ref) => rate <= BARE_LOAD_LIMIT * ref.rps);
    const own = [];
    const added = new Map(beside.map((ref) => [ref, []]));
    const others = beside.map((ref) => ref.target);
    const bare = others.find((t) => t.baseline);
    const floor = others.find((t) => t.floor);
    for (let slice = 0; slice < LATENCY_SLICES; slice++) {
      const line = [...others.slice(0, 1), target, ...others.slice(1)];
      const order = slice % 2 ? line.reverse() : line;
      const lat = new Map();
      for (const t of order) {
        const cpuBefore = cpuMicros(t.pid);
        const run = await paced(t.url, t.headers, LATENCY_SLICE_SECONDS, rate);
        if (t === target) s.cpuHalf.push((cpuMicros(t.pid) - cpuBefore) / Math.max(1, run.total));
        lat.set(t, run);
      }
      own.push(lat.get(target).p99);
      s.lat50.push(lat.get(target).p50);
      s.lat99.push(lat.get(target).p99);
      for (const ref of beside) added.get(ref).push(lat.get(target).p99 - lat.get(ref.target).p99);
      if (bare && floor) samples.get(floor.name).added99.push(lat.get(floor).p99 - lat.get(bare).p99);
    }
    let text = `p99 ${median(own).toFixed(2)} ms @ ${rate} req/s`;
    for (const [ref, differences] of added) {
      (ref.target.floor ? s.overFloor99 : s.added99).push(...differences);
      const roundAdded = median(differences);
      text += ` (${roundAdded >= 0 ? "+" : ""}${roundAdded.toFixed(2)} ms on ${ref.target.floor ? "the floor" : "bare"})`;
    }
    return text;
  };
  const baselineTarget = selected.find((t) => t.baseline);
  const floorTarget = selected.find((t) => t.floor);
  // What one Redis round trip costs the proxy's core by itself, with nothing else running: its CPU
  // (at half load a request's limiter call has few others to share its wake-up with) and its
  // latency when sent once a millisecond, as at low load (see the README).
  const roundTrip = { lone_us: [], together_us: [], paced_p50_ms: [], paced_p99_ms: [] };
  for (let round = 1; round <= ROUNDS; round++) {
    const trip = await redisRoundTrip(redisUrl);
    for (const [name, figures] of Object.entries(roundTrip)) figures.push(...trip[name]);
    for (const target of selected) {
      if (target.baseline) continue;
      // Machine speed drifts by tens of percent within minutes here (a virtual machine's
      // neighbours), so each target is compared with a bare proxy started and warmed with it and
      // measured just before and just after it, idle while the target is loaded. Both start
      // afresh for every target and round: two processes of one build can settle up to 15 %
      // apart, so a median should come from several of them.
      Object.assign(baselineTarget, await baselineTarget.start());
      if (target.start) Object.assign(target, await target.start());
      // The floor's saturation comes from its own row, measured earlier in the round.
      const pairWithFloor = target.overFloor && floorTarget && samples.get(floorTarget.name).rps.length > 0;
      if (pairWithFloor) {
        Object.assign(floorTarget, await floorTarget.start());
        await saturate(floorTarget.url, floorTarget.headers, WARMUP);
      }
      if (target.prewarm) await autocannon(target.url, target.prewarm, 0, KEY_COUNT);
      await saturate(baselineTarget.url, baselineTarget.headers, WARMUP);
      await saturate(target.url, target.headers, WARMUP);
      const bareBefore = await measure(baselineTarget, BESIDE_SECONDS);
      const versusBefore = target.versus && (await saturate(target.url, target.versus, BESIDE_SECONDS));
      const rps = await measure(target, SECONDS);
      const versusAfter = target.versus && (await saturate(target.url, target.versus, BESIDE_SECONDS));
      const bareAfter = await measure(baselineTarget, BESIDE_SECONDS);
      const ratio = rps / ((bareBefore + bareAfter) / 2);
      samples.get(target.name).ratio.push(ratio);
      const versusOne = target.versus && rps / ((versusBefore.rps + versusAfter.rps) / 2);
      if (target.versus) samples.get(target.name).versusOne.push(versusOne);
      await sleep(1_000); // neither proxy's latency should start on the tail of a saturation run
      // Latency added is measured the same way: the bare proxy (and the floor, for the rows compared
      // with it) at the target's rate, in slices before and after the target's.
      const refs = [{ target: baselineTarget, rps: (bareBefore + bareAfter) / 2 }];
      if (pairWithFloor) refs.push({ target: floorTarget, rps: median(samples.get(floorTarget.name).rps) });
      const lat = await latency(target, refs);
      await baselineTarget.stop();
      if (pairWithFloor) await floorTarget.stop();
      await target.stop?.();
      process.stderr.write(
        `round ${round}/${ROUNDS}  ${target.name.padEnd(40)} ${Math.round(rps)} req/s = ${ratio.toFixed(2)} x bare` +
          `${target.versus ? ` = ${versusOne.toFixed(2)} x 1 key` : ""}, ${lat}\n`,
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
      // Throughput against one key on the same process (the many-keys target).
      one_key_ratio: s.versusOne.length ? round2(median(s.versusOne)) : null,
      // Medians over the latency slices of every round; the added p99 over the pairs of slices,
      // in the rounds where the bare proxy could carry the target's rate (see `latency`).
      p50_ms: round2(median(s.lat50)),
      p99_ms: round2(median(s.lat99)),
      p99_added_ms: t.baseline ? null : round2(median(s.added99)),
      p99_added_pairs: s.added99.length,
      // The same against the floor (one shared Redis round trip before forwarding), for the rows
      // paired with it.
      p99_over_floor_ms: s.overFloor99.length ? round2(median(s.overFloor99)) : null,
      p99_over_floor_pairs: s.overFloor99.length,
      sat_p99_ms: round2(median(s.p99)),
      cpu_us_per_req: round2(median(s.cpu)),
      cpu_half_us_per_req: round2(median(s.cpuHalf)),
      proxy_core_busy: round2(median(s.busy)),
      redis_cmds_per_req: s.cmds.length ? round2(median(s.cmds)) : null,
      redis_calls_per_req: s.calls.length ? round2(median(s.calls)) : null,
      non2xx_share: round2(median(s.non2xx)),
      // Every measurement behind the medians, in the order taken (the bare proxy's: two per target).
      samples: s,
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
    settings: {
      rounds: ROUNDS,
      seconds: SECONDS,
      warmup: WARMUP,
      connections: CONNECTIONS,
      keys: KEY_COUNT,
      latency_slices: LATENCY_SLICES,
      latency_slice_seconds: LATENCY_SLICE_SECONDS,
    },
    rows,
    // A Redis round trip from the proxy's core: CPU µs and latency, medians over every round's repeats, and each.
    redis_round_trip: {
      lone_us: round2(median(roundTrip.lone_us)),
      together_us: round2(median(roundTrip.together_us)),
      paced_p50_ms: round3(median(roundTrip.paced_p50_ms)),
      paced_p99_ms: round3(median(roundTrip.paced_p99_ms)),
      samples: roundTrip,
    },
  };
  mkdirSync(join(here, "results"), { recursive: true });
  const out = join(here, "results", `bench-${result.date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  printTable(result);
  process.stdout.write(`\nwritten to ${out}\n`);
  await redis.quit();
}

const round2 = (n) => (Number.isNaN(n) ? null : Math.round(n * 100) / 100);
const round3 = (n) => (Number.isNaN(n) ? null : Math.round(n * 1000) / 1000);

function printTable({ machine, settings, rows, redis_round_trip: trip }) {
  process.stdout.write(
    `\n${machine.model} x${machine.cpus}, Node ${machine.node}, proxy pinned: ${machine.pinned}, load: ${machine.loader}, ` +
      `${settings.rounds} rounds x ${settings.seconds}s, ${settings.connections} connections\n\n`,
  );
  const header = [
    "target",
    "req/s",
    "x bare",
    "x 1 key",
    "p50 ms @½",
    "p99 ms @½",
    "p99 added",
    "p99 over floor",
    "p99 ms sat",
    "CPU µs/req",
    "CPU µs/req @½",
    "core busy",
    "Redis cmds/req",
    "Redis calls/req",
    "non-2xx share",
  ];
  const lines = rows.map((r) => [
    r.target,
    r.rps,
    r.ratio,
    r.one_key_ratio ?? "-",
    r.p50_ms,
    r.p99_ms,
    r.p99_added_ms ?? "-",
    r.p99_over_floor_ms ?? "-",
    r.sat_p99_ms,
    r.cpu_us_per_req ?? "-",
    r.cpu_half_us_per_req ?? "-",
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
  process.stdout.write(
    `\nA Redis round trip (PING) from the proxy's core costs the waiting process ${trip.lone_us} µs of CPU ` +
      `one at a time, ${trip.together_us} µs each with ${settings.connections} in flight; sent one every ` +
      `millisecond, it takes ${trip.paced_p50_ms} ms at p50 and ${trip.paced_p99_ms} ms at p99.\n`,
  );
}

runMain(main);
