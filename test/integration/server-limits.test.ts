/**
 * The proxy listener's own limits, as configured under `server`: request
 * headers over `max_header_size` get 431, a client that never finishes its
 * headers is cut off after `headers_timeout_ms`, and an idle keep-alive
 * connection is closed after `keep_alive_timeout_ms`.
 */
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

let upstream: TestUpstream;
let gateway: TestGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startGateway(`
server: { max_header_size: 2048, headers_timeout_ms: 1000, request_timeout_ms: 2000, keep_alive_timeout_ms: 300 }
routes:
  - name: api
    auth: { public: true }
    match: { path_prefix: / }
    upstream: { url: "${upstream.url}" }
`);
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
});

/** Opens a raw connection, writes `text`, and resolves with all it reads until the server closes it. */
function exchange(text: string): Promise<{ received: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect(gateway.addresses.proxy.port, "127.0.0.1", () => socket.write(text));
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      received += chunk;
    });
    socket.on("error", reject);
    socket.on("close", () => resolve({ received, socket }));
  });
}

describe("server limits", () => {
  it("answers 431 to request headers over max_header_size", async () => {
    const { received } = await exchange(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(4096)}\r\n\r\n`);
    expect(received).toMatch(/^HTTP\/1\.1 431 /);
    expect(upstream.requests.length).toBe(0);
  });

  it("cuts off a client that never finishes its headers", async () => {
    const started = Date.now();
    const { received } = await exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n");
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    // Well before Node's default 30 s sweep: the configured 1 s applies (a bound, not a speed target).
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("closes an idle keep-alive connection after keep_alive_timeout_ms", async () => {
    const started = Date.now();
    const { received } = await exchange("GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
    // Node's default would keep it 5 s; the configured 300 ms applies.
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(received.toLowerCase()).toContain("keep-alive");
  });
});
