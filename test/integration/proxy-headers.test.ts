/**
 * What the upstream and the client see of the headers: hop-by-hop headers
 * (including those a client names in Connection) stop at the gateway,
 * X-Forwarded-For is the gateway's own unless the peer is a trusted proxy,
 * and every request carries one X-Request-Id both ways.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { echoHandler, send, startUpstream, type TestUpstream } from "../helpers/upstream.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let upstream: TestUpstream;
let untrusting: TestGateway;
let trusting: TestGateway;

function config(extra = ""): string {
  return `${extra}
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
    auth: { public: true }
  - name: kept-host
    match: { path_prefix: /kept }
    upstream: { url: "${upstream.url}" }
    auth: { public: true }
    preserve_host: true
`;
}

beforeAll(async () => {
  upstream = await startUpstream();
  untrusting = await startGateway(config());
  trusting = await startGateway(config("trusted_proxies: [127.0.0.1]"));
});

afterAll(async () => {
  await untrusting.stop();
  await trusting.stop();
  await upstream.close();
});

afterEach(() => {
  upstream.setHandler(echoHandler);
});

/** Sends one request through `gateway`; returns the response and the request the upstream saw. */
async function through(gateway: TestGateway, headers: Record<string, string>, path = "/api/h") {
  const seen = upstream.nextRequest();
  const res = await send(gateway.addresses.proxy.port, { path, headers });
  return { res, seen: await seen };
}

describe("the upstream's response", () => {
  it("reaches the client with its status line and every repeated header", async () => {
    upstream.setHandler((_req, res) => {
      res.statusMessage = "Created Here";
      res.setHeader("set-cookie", ["a=1; Path=/", "b=2; Path=/"]);
      res.setHeader("x-upstream", "kept");
      res.writeHead(201, { "content-type": "text/plain" }).end("made");
    });
    const { res } = await through(untrusting, {});
    expect(res.status).toBe(201);
    expect(res.statusMessage).toBe("Created Here");
    expect(res.headers["set-cookie"]).toEqual(["a=1; Path=/", "b=2; Path=/"]);
    expect(res.headers["x-upstream"]).toBe("kept");
    expect(res.headers["content-type"]).toBe("text/plain");
    expect(res.body.toString()).toBe("made");
  });
});

describe("hop-by-hop headers", () => {
  it("does not forward a header named in Connection, nor Keep-Alive, TE or Proxy-Authorization", async () => {
    const { res, seen } = await through(untrusting, {
      Connection: "keep-alive, X-Secret-Hop",
      "X-Secret-Hop": "must-not-pass",
      "Keep-Alive": "timeout=5, max=100",
      TE: "trailers",
      "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
      "X-End-To-End": "passes",
    });
    expect(res.status).toBe(200);
    expect(seen.headers["x-end-to-end"]).toBe("passes");
    expect(seen.headers["x-secret-hop"]).toBeUndefined();
    expect(seen.headers["keep-alive"]).toBeUndefined();
    expect(seen.headers.te).toBeUndefined();
    expect(seen.headers["proxy-authorization"]).toBeUndefined();
    // Nothing of them travels under another spelling either.
    expect(seen.rawHeaders.join("\n")).not.toMatch(/must-not-pass|cHJveHk6c2VjcmV0|timeout=5/);
  });

  it("does not return the upstream's hop-by-hop headers to the client", async () => {
    upstream.setHandler((_req, res) => {
      res.writeHead(200, {
        Connection: "X-Upstream-Hop",
        "X-Upstream-Hop": "internal",
        "Keep-Alive": "timeout=99",
        "X-Upstream-Plain": "visible",
      });
      res.end("ok");
    });
    const { res } = await through(untrusting, {});
    expect(res.headers["x-upstream-plain"]).toBe("visible");
    expect(res.headers["x-upstream-hop"]).toBeUndefined();
    expect(res.headers["keep-alive"]).toBeUndefined();
  });
});

describe("X-Forwarded-*", () => {
  it("replaces a client's X-Forwarded-For with the peer address when the peer is not trusted", async () => {
    const { seen } = await through(untrusting, {
      "X-Forwarded-For": "203.0.113.9",
      "X-Forwarded-Host": "evil.example",
      "X-Forwarded-Proto": "https",
      Forwarded: "for=203.0.113.9",
      "X-Real-IP": "203.0.113.9",
    });
    expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen.headers["x-forwarded-proto"]).toBe("http");
    expect(seen.headers["x-forwarded-host"]).toBe(`127.0.0.1:${untrusting.addresses.proxy.port}`);
    expect(seen.headers.forwarded).toBeUndefined();
    expect(seen.headers["x-real-ip"]).toBeUndefined();
  });

  it("sets X-Forwarded-For when the client sent none", async () => {
    const { seen } = await through(untrusting, {});
    expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
  });

  it("appends the peer to X-Forwarded-For when the peer is in trusted_proxies", async () => {
    const { seen } = await through(trusting, {
      "X-Forwarded-For": "203.0.113.9",
      "X-Forwarded-Proto": "https",
    });
    expect(seen.headers["x-forwarded-for"]).toBe("203.0.113.9, 127.0.0.1");
    expect(seen.headers["x-forwarded-proto"]).toBe("https");
  });

  it("logs the client found behind a trusted proxy", async () => {
    const { res } = await through(trusting, { "X-Forwarded-For": "198.51.100.23" });
    const id = res.headers["x-request-id"];
    await expect
      .poll(() => trusting.logLines().find((l) => l.msg === "request" && l.req_id === id)?.client)
      .toBe("198.51.100.23");
  });

  it("sends the upstream's own Host, or the client's with preserve_host", async () => {
    const { seen } = await through(untrusting, { Host: "api.example.com" });
    expect(seen.headers.host).toBe(`127.0.0.1:${upstream.port}`);
    const kept = await through(untrusting, { Host: "api.example.com" }, "/kept/x");
    expect(kept.seen.headers.host).toBe("api.example.com");
    expect(kept.seen.headers["x-forwarded-host"]).toBe("api.example.com");
  });
});

describe("X-Request-Id", () => {
  it("keeps a valid inbound id, forwards it and returns it", async () => {
    const { res, seen } = await through(untrusting, { "X-Request-Id": "client-abc.123" });
    expect(seen.headers["x-request-id"]).toBe("client-abc.123");
    expect(res.headers["x-request-id"]).toBe("client-abc.123");
  });

  it("replaces an invalid inbound id with a fresh one, the same upstream and downstream", async () => {
    const { res, seen } = await through(untrusting, { "X-Request-Id": "bad id; with spaces" });
    const id = seen.headers["x-request-id"];
    expect(id).toMatch(UUID);
    expect(res.headers["x-request-id"]).toBe(id);
  });

  it("creates one when there is none, and it wins over an id the upstream returns", async () => {
    upstream.setHandler((_req, res) => {
      res.setHeader("x-request-id", "upstream-made-this-up");
      res.end("ok");
    });
    const { res, seen } = await through(untrusting, {});
    expect(seen.headers["x-request-id"]).toMatch(UUID);
    expect(res.headers["x-request-id"]).toBe(seen.headers["x-request-id"]);
  });

  it("is on keygate's own error responses too, and in the log line", async () => {
    const res = await send(untrusting.addresses.proxy.port, {
      path: "/nowhere",
      headers: { "X-Request-Id": "lost-request-1" },
    });
    expect(res.status).toBe(404);
    expect(res.headers["x-request-id"]).toBe("lost-request-1");
    await expect
      .poll(() => untrusting.logLines().find((l) => l.msg === "request" && l.req_id === "lost-request-1"))
      .toMatchObject({ status: 404, error: "NOT_FOUND", path: "/nowhere" });
  });
});
