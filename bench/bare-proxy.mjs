// The baseline: a bare http-proxy-3 proxy with a keep-alive agent, nothing else.
import { Agent, createServer } from "node:http";
import { createProxyServer } from "http-proxy-3";

const proxy = createProxyServer({
  target: process.env.UPSTREAM,
  agent: new Agent({ keepAlive: true, maxSockets: 256 }),
});
proxy.on("error", (_error, _req, res) => {
  if (!res.headersSent) res.writeHead(502).end();
});
const server = createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () =>
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`),
);
