// What one Redis round trip costs the process that waits for it, from the proxy's core: the CPU
// time per PING sent one at a time (the process sleeps and wakes for every answer, as a gateway
// at low load does for each request's limiter call) and with CONNECTIONS in flight (answers
// arrive together and share each wake-up, as under load), REPEATS times each. Prints one JSON
// line with every repeat's figure (run.mjs takes the medians).
//
// Usage: node round-trip.mjs <redis url> <in flight>
import { Redis } from "ioredis";

const [url, inFlightArg] = process.argv.slice(2);
const IN_FLIGHT = Number(inFlightArg);
const LONE = 5_000;
const TOGETHER = 50_000;
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

await cpuPerPing(LONE, 1); // warm-up: connection, JIT
const lone = [];
const together = [];
for (let i = 0; i < REPEATS; i++) {
  lone.push(await cpuPerPing(LONE, 1));
  together.push(await cpuPerPing(TOGETHER, IN_FLIGHT));
}
await redis.quit();
process.stdout.write(`${JSON.stringify({ lone_us: lone, together_us: together })}\n`);
