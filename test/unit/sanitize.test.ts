import type { IncomingHttpHeaders } from "node:http";
import { describe, expect, it } from "vitest";
import type { RequestContext } from "../../src/pipeline/context.js";
import { sanitizeStage } from "../../src/pipeline/sanitize.js";

interface Probe {
  headers: [string, string][];
  peer?: string;
  upgrade?: boolean;
}

/** Runs the stage on a request with these raw headers; returns the headers it forwards and the context. */
function sanitize(probe: Probe, trustedProxies: string[] = [], reservedHeaders: string[] = []) {
  const headers: IncomingHttpHeaders = {};
  for (const [name, value] of probe.headers) {
    const key = name.toLowerCase();
    const previous = headers[key];
    headers[key] = previous === undefined ? value : `${previous}, ${value}`;
  }
  const ctx = {
    req: {
      headers,
      rawHeaders: probe.headers.flat(),
      socket: { remoteAddress: probe.peer ?? "198.51.100.7" },
    },
    upgrade: probe.upgrade ?? false,
    requestId: "",
    clientAddress: "",
  } as unknown as RequestContext;
  const error = sanitizeStage({ trustedProxies, protocol: "http", reservedHeaders })(ctx);
  return { error, headers: ctx.req.headers, ctx };
}

describe("hop-by-hop headers", () => {
  it("drops the standard ones and every header named in Connection", () => {
    const { headers } = sanitize({
      headers: [
        ["Host", "gw"],
        ["Connection", "keep-alive, X-Secret-Hop"],
        ["X-Secret-Hop", "1"],
        ["Keep-Alive", "timeout=5"],
        ["TE", "trailers"],
        ["Trailer", "x-t"],
        ["Proxy-Authorization", "Basic abc"],
        ["Proxy-Connection", "keep-alive"],
        ["Upgrade", "h2c"],
        ["X-Kept", "yes"],
      ],
    });
    expect(Object.keys(headers).sort()).toEqual(
      ["host", "x-kept", "x-request-id", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].sort(),
    );
  });

  it("keeps Upgrade and sets Connection: upgrade on a WebSocket handshake", () => {
    const { headers } = sanitize({
      upgrade: true,
      headers: [
        ["Host", "gw"],
        ["Connection", "Upgrade"],
        ["Upgrade", "websocket"],
        ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
      ],
    });
    expect(headers.upgrade).toBe("websocket");
    expect(headers.connection).toBe("upgrade");
    expect(headers["sec-websocket-key"]).toBe("dGhlIHNhbXBsZSBub25jZQ==");
  });

  it("never lets Connection remove Host or the request id", () => {
    const { headers, ctx } = sanitize({
      headers: [
        ["Host", "gw"],
        ["Connection", "host, x-request-id"],
        ["X-Request-Id", "abc-123"],
      ],
    });
    expect(headers.host).toBe("gw");
    expect(headers["x-request-id"]).toBe("abc-123");
    expect(ctx.requestId).toBe("abc-123");
  });

  it("removes reserved (identity) headers a client sent", () => {
    const { headers } = sanitize({ headers: [["X-Keygate-Key-Id", "forged"]] }, [], ["x-keygate-key-id"]);
    expect(headers["x-keygate-key-id"]).toBeUndefined();
  });

  it("normalizes Transfer-Encoding to chunked so the body is re-framed", () => {
    const { headers } = sanitize({ headers: [["Transfer-Encoding", "gzip, chunked"]] });
    expect(headers["transfer-encoding"]).toBe("chunked");
  });
});

describe("single-valued headers", () => {
  it.each([
    ["Host", "BAD_REQUEST"],
    ["Content-Length", "BAD_REQUEST"],
    ["Authorization", "UNAUTHORIZED"],
  ])("refuses a duplicated %s", (name, code) => {
    const { error } = sanitize({
      headers: [
        [name, "1"],
        [name.toUpperCase(), "2"],
      ],
    });
    expect(error?.code).toBe(code);
  });
});

describe("request id", () => {
  it("keeps a well-formed inbound id", () => {
    const { ctx, headers } = sanitize({ headers: [["X-Request-Id", "client.req-42:a@b_c"]] });
    expect(ctx.requestId).toBe("client.req-42:a@b_c");
    expect(headers["x-request-id"]).toBe("client.req-42:a@b_c");
  });

  it.each(["has space", "a".repeat(129), "<script>", "", "x\u00e9"])("replaces %j with a UUID", (id) => {
    const { ctx, headers } = sanitize({ headers: [["X-Request-Id", id]] });
    expect(ctx.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(headers["x-request-id"]).toBe(ctx.requestId);
  });

  it("creates one when there is none", () => {
    expect(sanitize({ headers: [] }).ctx.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("forwarding headers", () => {
  const spoof: [string, string][] = [
    ["Host", "api.example.com"],
    ["X-Forwarded-For", "203.0.113.9"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "evil.example"],
    ["Forwarded", "for=203.0.113.9"],
    ["X-Real-IP", "203.0.113.9"],
  ];

  it("replaces them with the peer's when the peer is not trusted", () => {
    const { headers, ctx } = sanitize({ headers: spoof, peer: "198.51.100.7" });
    expect(headers["x-forwarded-for"]).toBe("198.51.100.7");
    expect(headers["x-forwarded-proto"]).toBe("http");
    expect(headers["x-forwarded-host"]).toBe("api.example.com");
    expect(headers.forwarded).toBeUndefined();
    expect(headers["x-real-ip"]).toBeUndefined();
    expect(ctx.clientAddress).toBe("198.51.100.7");
  });

  it("appends the peer when it is a trusted proxy, and takes the client from the chain", () => {
    const { headers, ctx } = sanitize({ headers: spoof, peer: "::ffff:10.1.2.3" }, ["10.0.0.0/8"]);
    expect(headers["x-forwarded-for"]).toBe("203.0.113.9, 10.1.2.3");
    expect(headers["x-forwarded-proto"]).toBe("https");
    expect(headers["x-forwarded-host"]).toBe("evil.example");
    expect(ctx.clientAddress).toBe("203.0.113.9");
  });

  it("walks past every trusted hop from the right", () => {
    const { ctx } = sanitize(
      { headers: [["X-Forwarded-For", "1.2.3.4, 203.0.113.9, 10.0.0.5"]], peer: "10.0.0.1" },
      ["10.0.0.0/8"],
    );
    expect(ctx.clientAddress).toBe("203.0.113.9");
  });

  it("falls back to the peer when a trusted proxy sends a garbled chain", () => {
    const { ctx } = sanitize({ headers: [["X-Forwarded-For", "not-an-ip"]], peer: "10.0.0.1" }, [
      "10.0.0.0/8",
    ]);
    expect(ctx.clientAddress).toBe("10.0.0.1");
  });

  it("trusts exact addresses and IPv6 blocks", () => {
    expect(
      sanitize({ headers: [["X-Forwarded-For", "203.0.113.9"]], peer: "127.0.0.1" }, ["127.0.0.1"]).headers[
        "x-forwarded-for"
      ],
    ).toBe("203.0.113.9, 127.0.0.1");
    expect(
      sanitize({ headers: [["X-Forwarded-For", "203.0.113.9"]], peer: "2001:db8::1" }, ["2001:db8::/32"]).ctx
        .clientAddress,
    ).toBe("203.0.113.9");
    expect(
      sanitize({ headers: [["X-Forwarded-For", "203.0.113.9"]], peer: "127.0.0.2" }, ["127.0.0.1"]).headers[
        "x-forwarded-for"
      ],
    ).toBe("127.0.0.2");
  });
});
