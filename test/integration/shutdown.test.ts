/**
 * Graceful shutdown of the real process: on SIGTERM, readiness turns 503,
 * new connections are refused, a request already in flight still gets its
 * full answer, and the process exits 0.
 */
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { get, type ServeProcess, startServeProcess } from "../helpers/process.js";
import { send, startUpstream, type TestUpstream } from "../helpers/upstream.js";

const SLOW_MS = 1_500;
const BODY = Buffer.alloc(512 * 1024);
for (let i = 0; i < BODY.length; i++) BODY[i] = (i * 7) & 0xff;

let serve: ServeProcess | undefined;
let upstream: TestUpstream | undefined;

afterEach(async () => {
  await serve?.cleanup();
  await upstream?.close();
  serve = undefined;
  upstream = undefined;
});

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function routes(url: string): string {
  return `
server:
  shutdown_grace_ms: 10000
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${url}" }
    auth: { public: true }
`;
}

describe("SIGTERM", () => {
  it("drains: readyz 503, in-flight request completes in full, exit code 0", async () => {
    upstream = await startUpstream((_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": BODY.length });
        res.end(BODY);
      }, SLOW_MS);
    });
    serve = await startServeProcess(routes(upstream.url));
    expect((await get(serve.adminPort, "/readyz")).status).toBe(200);

    const arrived = upstream.nextRequest();
    let settled = false;
    const inFlight = send(serve.proxyPort, { path: "/api/slow" }).finally(() => {
      settled = true;
    });
    await arrived; // the request is now with the upstream
    expect(serve.child.kill("SIGTERM")).toBe(true);

    // Meanwhile: not ready any more, and no new connections.
    await expect
      .poll(async () => (await get(serve!.adminPort, "/readyz")).status, { interval: 20 })
      .toBe(503);
    expect(JSON.parse((await get(serve.adminPort, "/readyz")).body)).toEqual({ status: "draining" });
    await expect(send(serve.proxyPort, { path: "/api/late" })).rejects.toThrow(/ECONNREFUSED|ECONNRESET/);
    expect(settled).toBe(false);

    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.body.length).toBe(BODY.length);
    expect(sha256(res.body)).toBe(sha256(BODY));
    expect(res.headers.connection).toBe("close");

    expect(await serve.exited).toEqual({ code: 0, signal: null });
    expect(upstream.requests.map((r) => r.url)).toEqual(["/api/slow"]);
    const messages = serve
      .stdout()
      .split("\n")
      .filter(Boolean)
      .map((line) => (JSON.parse(line) as { msg: string }).msg);
    expect(messages).toEqual(expect.arrayContaining(["shutdown requested", "draining", "stopped"]));
    expect(messages).toContain("request");
  });

  it("exits 0 at once when idle", async () => {
    upstream = await startUpstream();
    serve = await startServeProcess(routes(upstream.url));
    expect((await send(serve.proxyPort, { path: "/api/x" })).status).toBe(200);
    serve.child.kill("SIGTERM");
    expect(await serve.exited).toEqual({ code: 0, signal: null });
  });
});
