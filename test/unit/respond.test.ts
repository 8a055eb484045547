import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { ERROR_CATALOGUE, ERROR_CODES, GatewayError } from "../../src/errors.js";
import { compileErrorRenderer, type ErrorRenderer, sendErrorOnSocket } from "../../src/pipeline/respond.js";

const ROUTES = `routes:
  - name: api
    match: { path_prefix: / }
    upstream: { url: "http://127.0.0.1:3000" }
`;

/** A renderer from the `errors:` block of a real (validated) configuration. */
function renderer(errorsYaml = ""): ErrorRenderer {
  return compileErrorRenderer(parseConfig(`${errorsYaml}\n${ROUTES}`, "test.yaml", {}).errors);
}

function render(render: ErrorRenderer, error: GatewayError) {
  const out = render(error);
  return { status: out.status, contentType: out.contentType, body: JSON.parse(out.body.toString("utf8")) };
}

describe("error renderer", () => {
  it("nested (default): {error: {code, message}} as application/json", () => {
    expect(render(renderer(), new GatewayError("NOT_FOUND"))).toEqual({
      status: 404,
      contentType: "application/json",
      body: { error: { code: "NOT_FOUND", message: "No route matches this request" } },
    });
  });

  it("renders every catalogue code with its status and message", () => {
    const nested = renderer();
    for (const code of ERROR_CODES) {
      const out = render(nested, new GatewayError(code, { params: { retry_after: 3 } }));
      expect(out.status).toBe(ERROR_CATALOGUE[code].status);
      expect(out.body.error.code).toBe(code);
      expect(out.body.error.message).toBe(ERROR_CATALOGUE[code].message.replace("{retry_after}", "3"));
    }
  });

  it("flat: {error: message}", () => {
    expect(render(renderer("errors: { style: flat }"), new GatewayError("BAD_GATEWAY"))).toEqual({
      status: 502,
      contentType: "application/json",
      body: { error: "Upstream unavailable" },
    });
  });

  it("problem: RFC 9457 application/problem+json", () => {
    expect(render(renderer("errors: { style: problem }"), new GatewayError("UPSTREAM_TIMEOUT"))).toEqual({
      status: 504,
      contentType: "application/problem+json",
      body: {
        type: "about:blank",
        title: "Gateway Timeout",
        status: 504,
        detail: "Upstream timed out",
        code: "UPSTREAM_TIMEOUT",
      },
    });
  });

  it("applies per-code status and message overrides in every style", () => {
    const overrides = `
  codes:
    NOT_FOUND: { status: 410, message: "Gone for good" }
    BAD_GATEWAY: { message: "Try later" }`;
    const nested = renderer(`errors:${overrides}`);
    expect(render(nested, new GatewayError("NOT_FOUND"))).toMatchObject({
      status: 410,
      body: { error: { code: "NOT_FOUND", message: "Gone for good" } },
    });
    expect(render(nested, new GatewayError("BAD_GATEWAY"))).toMatchObject({
      status: 502,
      body: { error: { code: "BAD_GATEWAY", message: "Try later" } },
    });
    // codes without an override keep the catalogue
    expect(render(nested, new GatewayError("BAD_REQUEST")).body.error.message).toBe("Malformed request");

    const problem = renderer(`errors:\n  style: problem${overrides}`);
    expect(render(problem, new GatewayError("NOT_FOUND")).body).toEqual({
      type: "about:blank",
      title: "Gone",
      status: 410,
      detail: "Gone for good",
      code: "NOT_FOUND",
    });
    const flat = renderer(`errors:\n  style: flat${overrides}`);
    expect(render(flat, new GatewayError("NOT_FOUND"))).toMatchObject({
      status: 410,
      body: { error: "Gone for good" },
    });
  });

  it("fills {placeholders} per response, also in overridden messages", () => {
    const custom = renderer(`errors:
  codes:
    RATE_LIMITED: { message: "Slow down: {retry_after}s" }`);
    expect(
      render(custom, new GatewayError("RATE_LIMITED", { params: { retry_after: 7 } })).body.error.message,
    ).toBe("Slow down: 7s");
    expect(
      render(custom, new GatewayError("RATE_LIMITED", { params: { retry_after: 1 } })).body.error.message,
    ).toBe("Slow down: 1s");
    expect(
      render(renderer(), new GatewayError("RATE_LIMITED", { params: { retry_after: 12 } })).body.error
        .message,
    ).toBe("Rate limit exceeded. Try again in 12 seconds.");
  });

  it("never puts the internal detail into the body", () => {
    const out = renderer()(
      new GatewayError("BAD_GATEWAY", { detail: "ECONNREFUSED 10.1.2.3:8080 secret-host" }),
    );
    expect(out.body.toString()).not.toContain("secret-host");
    expect(out.body.toString()).not.toContain("10.1.2.3");
  });

  it("rejects an unknown code or an out-of-range status in the overrides", () => {
    expect(() => renderer("errors:\n  codes:\n    TEAPOT: { status: 418 }")).toThrow(/errors\.codes/);
    expect(() => renderer("errors:\n  codes:\n    NOT_FOUND: { status: 200 }")).toThrow(/NOT_FOUND\.status/);
  });
});

describe("sendErrorOnSocket", () => {
  it("writes one complete HTTP response and closes", async () => {
    const socket = new PassThrough();
    const written: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => written.push(chunk));
    const ended = new Promise((resolve) => socket.on("end", resolve));
    sendErrorOnSocket(
      socket,
      renderer(),
      new GatewayError("UNAUTHORIZED", { headers: { "www-authenticate": 'Bearer realm="keygate"' } }),
      "req-1",
    );
    await ended;
    const text = Buffer.concat(written).toString("utf8");
    const [head, body] = text.split("\r\n\r\n") as [string, string];
    const lines = head.split("\r\n");
    expect(lines[0]).toBe("HTTP/1.1 401 Unauthorized");
    expect(lines).toContain("content-type: application/json");
    expect(lines).toContain(`content-length: ${Buffer.byteLength(body)}`);
    expect(lines).toContain("connection: close");
    expect(lines).toContain("x-request-id: req-1");
    expect(lines).toContain('www-authenticate: Bearer realm="keygate"');
    expect(JSON.parse(body)).toEqual({
      error: { code: "UNAUTHORIZED", message: "Missing or invalid Authorization header" },
    });
  });
});
