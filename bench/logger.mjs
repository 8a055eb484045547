// The access log's cost per line, apart from the gateway: keygate's logger writing
// access-shaped lines to stdout, and the same logger with a destination that drops
// them (serialization only). Run with stdout on a pipe, as a container runtime collects it:
//   npm run -s build && node bench/logger.mjs | cat > /dev/null
import { createLogger } from "../dist/observability/logger.js";

const LINES = 200_000;
/** Lines logged per turn of the event loop, so the batched asynchronous writes get to run. */
const PER_TURN = 64;

const line = (i) => ({
  req_id: "3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b",
  method: "GET",
  route: "api",
  path: `/v1/items/${i % 100}`,
  status: 200,
  duration_ms: 1.23,
  upstream_ms: 0.98,
  client: "127.0.0.1",
  key_id: "key_000000000000000000000001",
});

function logLines(logger, count) {
  let i = 0;
  return new Promise((resolve) => {
    const turn = () => {
      for (let j = 0; j < PER_TURN && i < count; j++, i++) logger.info(line(i), "request");
      if (i < count) setImmediate(turn);
      else resolve();
    };
    turn();
  });
}

async function measure(name, logger) {
  await logLines(logger, LINES / 10); // warm-up: the first lines run before the JIT has compiled the path
  await new Promise((resolve) => logger.flush(resolve));
  const start = process.cpuUsage();
  await logLines(logger, LINES);
  await new Promise((resolve) => logger.flush(resolve)); // the last writes are part of the cost
  const used = process.cpuUsage(start);
  process.stderr.write(
    `${name.padEnd(34)} ${((used.user + used.system) / LINES).toFixed(2)} µs CPU per line\n`,
  );
}

await measure("serialization only (no write)", createLogger({ level: "info", destination: { write() {} } }));
await measure("keygate's logger to stdout", createLogger({ level: "info" }));
