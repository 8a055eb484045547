// The baseline: a bare http-proxy-3 proxy with a keep-alive agent, nothing else.
//
// With ROUND_TRIP=1 (and REDIS_URL) it is the floor of an exact rate limit shared by instances:
// each request waits for one Redis round trip before it is forwarded. As in keygate, the requests
// of one event-loop turn share it (one INCRBY of a counter by their number, sent in the check
// phase), so the floor costs what the round trip costs and no more. What it adds to the bare
// proxy's latency, keygate's Redis path cannot avoid either (README "Performance").
import { Agent, createServer } from "node:http";
import { createProxyServer } from "http-proxy-3";
import { Redis } from "ioredis";

const proxy = createProxyServer({
  target: process.env.UPSTREAM,
  agent: new Agent({ keepAlive: true, maxSockets: 256 }),
});
proxy.on("error", (_error, _req, res) => {
  if (!res.headersSent) res.writeHead(502).end();
});

const forward = (req, res) => proxy.web(req, res);
let handler = forward;
if (process.env.ROUND_TRIP === "1") {
  const redis = new Redis(process.env.REDIS_URL);
  const counter = `${process.env.NAMESPACE ?? "bench:"}floor`;
  let waiting = [];
  const flush = () => {
    const batch = waiting;
    waiting = [];
    redis.incrby(counter, batch.length).then(
      () => {
        for (const [req, res] of batch) forward(req, res);
      },
      () => {
        for (const [, res] of batch) res.writeHead(503).end();
      },
    );
  };
  handler = (req, res) => {
    if (waiting.length === 0) setImmediate(flush);
    waiting.push([req, res]);
  };
}

const server = createServer(handler);
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () =>
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`),
);
