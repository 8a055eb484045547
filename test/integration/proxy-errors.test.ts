/**
 * What a client sees when the upstream fails: refused connection (502), no
 * answer within the route's time budgets (504, connect or response), a reset
 * in the middle of the body (a cut response, never a second one), and no
 * route at all (404). Requests the gateway gives up on are aborted upstream
 * too, and the gateway keeps serving afterwards.
 */
import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  type Blackhole,
  json,
  send,
  startBlackhole,
  startUpstream,
  type TestUpstream,
  unusedPort,
} from "../helpers/upstream.js";

let gateway: TestGateway | undefined;
let upstream: TestUpstream | undefined;
let blackhole: Blackhole | undefined;

afterEach(async () => {
  await gateway?.stop();
  await upstream?.close();
  await blackhole?.close();
  gateway = undefined;
  upstream = undefined;
  blackhole = undefined;
});

function config(upstreamUrl: string, responseMs = 30_000, connectMs = 5_000): string {
  return `
server: { shutdown_grace_ms: 1000 }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstreamUrl}" }
    auth: { public: true }
    timeouts: { response_ms: ${responseMs}, connect_ms: ${connectMs} }
`;
}

describe("upstream failures", () => {
  it("answers 502 BAD_GATEWAY in JSON when nothing listens on the upstream port", async () => {
    gateway = await startGateway(config(`http://127.0.0.1:${await unusedPort()}`));
    const res = await send(gateway.addresses.proxy.port, { path: "/api/x" });
    expect(res.status).toBe(502);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(json(res)).toEqual({ error: { code: "BAD_GATEWAY", message: expect.any(String) } });
    expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("answers 504 UPSTREAM_TIMEOUT when the upstream does not answer within timeouts.response_ms", async () => {
    // This upstream reads the request and never answers; only close() ends it.
    upstream = await startUpstream(() => {});
    gateway = await startGateway(config(upstream.url, 150));
    const res = await send(gateway.addresses.proxy.port, { path: "/api/slow" });
    expect(res.status).toBe(504);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(json(res)).toEqual({ error: { code: "UPSTREAM_TIMEOUT", message: expect.any(String) } });
    expect(upstream.requests.map((r) => r.url)).toEqual(["/api/slow"]);
  });

  it("answers 504 after timeouts.connect_ms when the upstream never accepts the connection", async () => {
    blackhole = await startBlackhole();
    // response_ms is far longer than the test timeout: only the connect timer can answer in time.
    gateway = await startGateway(config(`http://127.0.0.1:${blackhole.port}`, 60_000, 100));
    const res = await send(gateway.addresses.proxy.port, {
      path: "/api/unreachable",
      headers: { "x-request-id": "connect-timeout-1" },
    });
    expect(res.status).toBe(504);
    expect(json(res)).toEqual({ error: { code: "UPSTREAM_TIMEOUT", message: expect.any(String) } });
    await expect
      .poll(() => gateway!.logLines().find((l) => l.msg === "request" && l.req_id === "connect-timeout-1"))
      .toMatchObject({
        error: "UPSTREAM_TIMEOUT",
        error_detail: expect.stringContaining("connect timed out"),
      });
  });

  it("does not count a slow upload against timeouts.response_ms", async () => {
    upstream = await startUpstream();
    gateway = await startGateway(config(upstream.url, 300));
    // The body trickles in over ~1 s, more than three times response_ms; the upstream answers
    // as soon as it has all of it.
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: gateway!.addresses.proxy.port,
          method: "POST",
          path: "/api/upload",
          agent: false,
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on("error", reject);
      let sent = 0;
      const timer = setInterval(() => {
        if (++sent > 10) {
          clearInterval(timer);
          req.end();
        } else req.write("x".repeat(1000));
      }, 100);
    });
    expect(status).toBe(200);
    expect(JSON.parse(body)).toEqual({ method: "POST", url: "/api/upload", bodyLength: 10_000 });
  });

  it("aborts the upstream request it gave up on, also after Expect: 100-continue", async () => {
    const abandoned: string[] = [];
    upstream = await startUpstream((req) => {
      req.socket.once("close", () => abandoned.push(req.url ?? ""));
    });
    gateway = await startGateway(config(upstream.url, 150));
    const port = gateway.addresses.proxy.port;
    for (const [path, headers] of [
      ["/api/plain", {}],
      ["/api/expect", { expect: "100-continue" }],
    ] as const) {
      const res = await send(port, {
        method: "POST",
        path,
        headers: { ...headers, "content-length": 5 },
        body: "hello",
      });
      expect(res.status).toBe(504);
    }
    // The gateway must not leave a pooled upstream connection waiting on an answer nobody reads.
    await expect.poll(() => abandoned.sort()).toEqual(["/api/expect", "/api/plain"]);
  });

  it("forwards a request with Expect: 100-continue", async () => {
    upstream = await startUpstream();
    gateway = await startGateway(config(upstream.url));
    const res = await send(gateway.addresses.proxy.port, {
      method: "POST",
      path: "/api/continue",
      headers: { expect: "100-continue", "content-length": 5 },
      body: "hello",
    });
    expect(res.status).toBe(200);
    expect(json(res)).toEqual({ method: "POST", url: "/api/continue", bodyLength: 5 });
  });

  it("cuts the response short when the upstream resets mid-body, and keeps serving", async () => {
    upstream = await startUpstream((req, res) => {
      if (req.url === "/api/reset") {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": 1_000_000 });
        res.write(Buffer.alloc(64 * 1024, 1), () => setImmediate(() => req.socket.destroy()));
        return;
      }
      res.end("fine");
    });
    gateway = await startGateway(config(upstream.url));
    const port = gateway.addresses.proxy.port;

    const cut = await send(port, { path: "/api/reset" });
    expect(cut.status).toBe(200);
    expect(cut.complete).toBe(false);
    expect(cut.body.length).toBeLessThan(1_000_000);

    const next = await send(port, { path: "/api/after" });
    expect(next.status).toBe(200);
    expect(next.body.toString()).toBe("fine");

    const metrics = await gateway.registry.metrics();
    expect(metrics).toContain('keygate_upstream_errors_total{route="api",code="BAD_GATEWAY"} 1');
  });

  it("cuts a chunked response short when the upstream resets mid-body", async () => {
    upstream = await startUpstream((req, res) => {
      res.writeHead(200, { "content-type": "text/plain" }); // no length: chunked
      res.write("first part", () => setImmediate(() => req.socket.destroy()));
    });
    gateway = await startGateway(config(upstream.url));
    const cut = await send(gateway.addresses.proxy.port, { path: "/api/chunked-reset" });
    expect(cut.status).toBe(200);
    expect(cut.headers["transfer-encoding"]).toBe("chunked");
    expect(cut.complete).toBe(false);
    expect(cut.body.toString()).toBe("first part");
  });

  it("aborts the upstream request when the client goes away, and logs 499", async () => {
    const abandoned: string[] = [];
    upstream = await startUpstream((req) => {
      req.socket.once("close", () => abandoned.push(req.url ?? ""));
    });
    gateway = await startGateway(config(upstream.url));
    const arrived = upstream.nextRequest();
    const req = request({
      host: "127.0.0.1",
      port: gateway.addresses.proxy.port,
      path: "/api/gone",
      headers: { "x-request-id": "client-gone-1" },
      agent: false,
    });
    req.on("error", () => {});
    req.end();
    await arrived;
    req.destroy();
    await expect.poll(() => abandoned).toEqual(["/api/gone"]);
    await expect
      .poll(() => gateway!.logLines().find((l) => l.msg === "request" && l.req_id === "client-gone-1"))
      .toMatchObject({ status: 499, route: "api" });
    // A client leaving is not an upstream fault.
    expect(await gateway.registry.metrics()).not.toContain("keygate_upstream_errors_total{");
  });

  it("answers 404 NOT_FOUND in JSON when no route matches, without calling the upstream", async () => {
    upstream = await startUpstream();
    gateway = await startGateway(config(upstream.url));
    const res = await send(gateway.addresses.proxy.port, { path: "/apix" });
    expect(res.status).toBe(404);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(json(res)).toEqual({ error: { code: "NOT_FOUND", message: expect.any(String) } });
    expect(upstream.requests).toHaveLength(0);
  });
});
