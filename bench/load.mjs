// Fixed-rate load for latency percentiles (autocannon, in its own process).
// Usage: node load.mjs <url> <rate req/s> <seconds> <connections> [header-file]
// The header file holds one Authorization value per line; one is picked at random per request.
import { readFileSync } from "node:fs";
import autocannon from "autocannon";

const [url, rate, seconds, connections, headerFile] = process.argv.slice(2);
const values = headerFile ? readFileSync(headerFile, "utf8").split("\n").filter(Boolean) : [];
const pick = () => values[Math.floor(Math.random() * values.length)];

const result = await autocannon({
  url,
  connections: Number(connections),
  duration: Number(seconds),
  overallRate: Number(rate),
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
