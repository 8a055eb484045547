// Closed-loop load with autocannon, in its own process: saturation when wrk is missing, and the
// in-order pass that warms the many-keys target's cache. (Latency at a fixed rate: paced.mjs.)
// Usage: node load.mjs <url> <seconds> <connections> [header-file] [sequential-amount]
// The header file holds one Authorization value per line; one is picked at random per request,
// or, with a sequential amount, each in order, `amount` requests in all.
import { readFileSync } from "node:fs";
import autocannon from "autocannon";

const [url, seconds, connections, headerFile, sequential] = process.argv.slice(2);
const values = headerFile ? readFileSync(headerFile, "utf8").split("\n").filter(Boolean) : [];
const amount = Number(sequential ?? 0);
let next = 0;
const pick =
  amount > 0 ? () => values[next++ % values.length] : () => values[Math.floor(Math.random() * values.length)];

// autocannon's own percentiles are whole milliseconds and leave out non-2xx answers; the
// response times it reports per response are exact, so the percentiles are computed here.
const times = [];
const instance = autocannon({
  url,
  connections: Number(connections),
  ...(amount > 0 ? { amount } : { duration: Number(seconds) }),
  requests: [
    {
      setupRequest: (request) =>
        values.length > 0 ? { ...request, headers: { authorization: pick() } } : request,
    },
  ],
});
instance.on("response", (_client, _status, _bytes, responseTime) => times.push(responseTime));
const result = await instance;

times.sort((a, b) => a - b);
const percentile = (p) =>
  times.length === 0
    ? null
    : Math.round(times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] * 1000) / 1000;
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    total: result.requests.total,
    p99: percentile(99),
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  })}\n`,
);
