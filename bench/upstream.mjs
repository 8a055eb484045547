// The benchmark's upstream: the smallest useful HTTP service, answering a small JSON body.
import { createServer } from "node:http";

const body = Buffer.from(JSON.stringify({ ok: true, service: "bench-upstream" }));
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () =>
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`),
);
