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

// autocannon's own percentiles are whole milliseconds and leave out non-2xx answers; the
// response times it reports per response are exact, so the percentiles are computed here.
const times = [];
const instance = autocannon({
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
instance.on("response", (_client, _status, _bytes, responseTime) => times.push(responseTime));
const result = await instance;

// Coordinated omission: a connection that waited on a slow answer sent its next requests late;
// count the requests it should have sent meanwhile as having waited too (HdrHistogram's
// recordValueWithExpectedInterval).
if (Number(rate) > 0) {
  const interval = (1000 * Number(connections)) / Number(rate);
  for (let i = 0, n = times.length; i < n; i++) {
    for (let missed = times[i] - interval; missed >= interval; missed -= interval) times.push(missed);
  }
}
times.sort((a, b) => a - b);
const percentile = (p) =>
  times.length === 0
    ? null
    : Math.round(times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] * 1000) / 1000;
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    p50: percentile(50),
    p99: percentile(99),
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  })}\n`,
);
