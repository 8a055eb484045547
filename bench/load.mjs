// Fixed-rate load for latency percentiles (autocannon, in its own process).
// Usage: node load.mjs <url> <rate req/s> <seconds> <connections> [header-file] [sequential-amount]
// The header file holds one Authorization value per line; one is picked at random per request,
// or, with a sequential amount, each in order (to warm a cache), `amount` requests in all.
import { readFileSync } from "node:fs";
import autocannon from "autocannon";

const [url, rate, seconds, connections, headerFile, sequential] = process.argv.slice(2);
const values = headerFile ? readFileSync(headerFile, "utf8").split("\n").filter(Boolean) : [];
const amount = Number(sequential ?? 0);
let next = 0;
const pick =
  amount > 0 ? () => values[next++ % values.length] : () => values[Math.floor(Math.random() * values.length)];

const result = await autocannon({
  url,
  connections: Number(connections),
  ...(amount > 0 ? { amount } : { duration: Number(seconds) }),
  ...(Number(rate) > 0 ? { overallRate: Number(rate) } : {}),
  requests: [
    {
      setupRequest: (request) =>
        values.length > 0 ? { ...request, headers: { authorization: pick() } } : request,
    },
  ],
});
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  })}\n`,
);
