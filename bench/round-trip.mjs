// What one Redis round trip costs the process that waits for it, from the proxy's core: the CPU
// time per PING sent one at a time (the process sleeps and wakes for every answer, as a gateway
// at low load does for each request's limiter call) and with CONNECTIONS in flight (answers
// arrive together and share each wake-up, as under load), REPEATS times each. Then the latency
// of PINGs sent one every millisecond, as a gateway at low load sends its limiter calls, with a
// pause before each in which both processes may go idle: what waiting for one round trip adds
// to a request here before any work is done. Prints one JSON line with every repeat's figures
// (run.mjs takes the medians).
//
// Usage: node round-trip.mjs <redis url> <in flight>
import { Redis } from "ioredis";

const [url, inFlightArg] = process.argv.slice(2);
const IN_FLIGHT = Number(inFlightArg);
const LONE = 5_000;
const TOGETHER = 50_000;
const PACED = 2_000;
const REPEATS = 3;

const redis = new Redis(url);

/** CPU µs per PING, `n` of them with `inFlight` outstanding at any time. */
async function cpuPerPing(n, inFlight) {
  let sent = 0;
  const before = process.cpuUsage();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (sent++ < n) await redis.ping();
    }),
  );
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

/** The p50 and p99 (ms) of `n` PINGs, one sent every millisecond (a slower answer overlaps the next). */
async function pacedLatency(n) {
  const took = new Float64Array(n);
  let sent = 0;
  let answered = 0;
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      if (sent === n) return;
      const index = sent++;
      const start = performance.now();
      redis.ping().then(() => {
        took[index] = performance.now() - start;
        if (++answered === n) {
          clearInterval(tick);
          resolve();
        }
      });
    }, 1);
  });
  took.sort();
  return { p50: took[Math.floor(0.5 * n)], p99: took[Math.floor(0.99 * n)] };
}

await cpuPerPing(LONE, 1); // warm-up: connection, JIT
const lone = [];
const together = [];
const pacedP50 = [];
const pacedP99 = [];
for (let i = 0; i < REPEATS; i++) {
  lone.push(await cpuPerPing(LONE, 1));
  together.push(await cpuPerPing(TOGETHER, IN_FLIGHT));
  const { p50, p99 } = await pacedLatency(PACED);
  pacedP50.push(p50);
  pacedP99.push(p99);
}
await redis.quit();
process.stdout.write(
  `${JSON.stringify({ lone_us: lone, together_us: together, paced_p50_ms: pacedP50, paced_p99_ms: pacedP99 })}\n`,
);
