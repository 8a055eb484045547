// Build against build: keygate builds head to head on the benchmark's headline target (Redis
// store, one cached key, one window), to tell whether a change made keygate faster.
//
//   cp -r dist dist-before      # keep the build before the change (inside the checkout, so it
//   # ...change, npm run build     finds node_modules), then:
//   node bench/ab.mjs dist-before dist
//
// On a virtual machine, one process's CPU per request can move by half within seconds, and two
// processes of the same build can settle up to 15 % apart. So all the builds run at once
// (only one under load at a time) in short slices that alternate, and the whole comparison is
// repeated with fresh processes: each pair of processes gives the median of its slices' ratios,
// and the result is the median over the pairs. Comparing a build with itself gives about 1.00.
//
// Options (environment): AB_PAIRS (5: how many times every build starts afresh), AB_SLICES (4 per
// build and pair), AB_SECONDS (2 per slice), BENCH_WARMUP (5), BENCH_CONNECTIONS (64).
import { resolve } from "node:path";
import { Redis } from "ioredis";
import {
  cpuMicros,
  freePort,
  HUGE,
  keygateConfig,
  median,
  newKey,
  runMain,
  saturate,
  seedRedis,
  startKeygate,
  startRedis,
  startUpstream,
  writeHeaderFile,
} from "./harness.mjs";

const PAIRS = Number(process.env.AB_PAIRS ?? 5);
const SLICES = Number(process.env.AB_SLICES ?? 4);
const SECONDS = Number(process.env.AB_SECONDS ?? 2);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5);

async function main() {
  const names = process.argv.slice(2);
  const builds = names.map((dir) => resolve(dir));
  if (builds.length < 2) throw new Error("usage: node bench/ab.mjs <build dir> <build dir> [...]");

  const redisUrl = await startRedis();
  const redis = new Redis(redisUrl);
  redis.on("error", () => {});
  const upstream = await startUpstream();
  const key = newKey();
  await seedRedis(redis, [key]);
  await redis.quit();
  const headers = writeHeaderFile("one", [key]);

  // Per build: per pair, the median over its slices of (this build / the first build).
  const results = names.map((name) => ({ name, rps: [], cpu: [], rpsRatio: [], cpuRatio: [] }));
  for (let pair = 1; pair <= PAIRS; pair++) {
    const running = [];
    for (const [i, build] of builds.entries()) {
      const port = await freePort();
      const config = keygateConfig({
        port,
        adminPort: await freePort(),
        store: "redis",
        redisUrl,
        upstreamUrl: upstream.url,
        windows: `{ minute: ${HUGE} }`,
      });
      const started = await startKeygate(`build-${i}-${pair}`, config, { build });
      running.push({ url: `http://127.0.0.1:${port}/`, ...started });
    }
    for (const target of running) await saturate(target.url, headers, WARMUP);
    const slices = builds.map(() => ({ rps: [], cpu: [] }));
    for (let slice = 0; slice < SLICES; slice++) {
      // Alternate the order, so no build always runs right after the same one.
      const order = [...running.keys()];
      if ((slice + pair) % 2) order.reverse();
      for (const i of order) {
        const target = running[i];
        const cpuBefore = cpuMicros(target.pid);
        const sat = await saturate(target.url, headers, SECONDS);
        // A build that refuses the key would look fast: that is a broken build, not a result.
        if (sat.non2xx > 0)
          throw new Error(`${names[i]}: ${sat.non2xx} of ${sat.total} answers were not 2xx`);
        slices[i].rps.push(sat.rps);
        slices[i].cpu.push((cpuMicros(target.pid) - cpuBefore) / Math.max(1, sat.total));
      }
    }
    for (const target of running) await target.stop();
    const first = slices[0];
    const line = results.map((result, i) => {
      const { rps, cpu } = slices[i];
      result.rps.push(...rps);
      result.cpu.push(...cpu);
      // CPU ratio inverted, so above 1 means faster for both.
      result.rpsRatio.push(median(rps.map((r, s) => r / first.rps[s])));
      result.cpuRatio.push(median(cpu.map((c, s) => first.cpu[s] / c)));
      return `${result.rpsRatio.at(-1).toFixed(3)} (cpu ${result.cpuRatio.at(-1).toFixed(3)})`;
    });
    process.stderr.write(`pair ${pair}/${PAIRS}  x first build: ${line.join("  ")}\n`);
  }

  process.stdout.write(
    `\n${PAIRS} pairs x ${SLICES} slices x ${SECONDS}s, ${builds.length} builds, ratios to ${names[0]}\n\n`,
  );
  for (const r of results) {
    process.stdout.write(
      `${r.name}\n  req/s ${Math.round(median(r.rps))}, CPU ${median(r.cpu).toFixed(1)} µs/req, ` +
        `x first: ${median(r.rpsRatio).toFixed(3)} by req/s, ${median(r.cpuRatio).toFixed(3)} by CPU ` +
        `(pairs: ${r.rpsRatio.map((x) => x.toFixed(2)).join(" ")})\n`,
    );
  }
}

runMain(main);
