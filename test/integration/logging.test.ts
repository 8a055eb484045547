/**
 * Credentials never reach the log, even at level trace: not the
 * Authorization header, not a header listed in logging.redact_headers, not
 * a query parameter listed in logging.redact_query, whatever the outcome of
 * the request (proxied, refused, failed upstream).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { send, startUpstream, type TestUpstream, unusedPort } from "../helpers/upstream.js";

const BEARER_SECRET = "rp_bearer-secret-5f3c1a9e77d24b0c";
/** Shaped like a real key (reelplus format), so authentication goes as far as the key lookup. */
const WELL_FORMED_KEY = `rp_${"7e2d94c1".repeat(8)}`;
const HEADER_SECRET = "hdr-secret-0b7d2e41c9a8";
const QUERY_SECRET = "qry-secret-91e0c4d3b2a1";
const COOKIE_SECRET = "cookie-secret-7a6b5c4d";
const SECRETS = [BEARER_SECRET, WELL_FORMED_KEY, HEADER_SECRET, QUERY_SECRET, COOKIE_SECRET];

let gateway: TestGateway;
let upstream: TestUpstream;

beforeAll(async () => {
  upstream = await startUpstream();
  const deadPort = await unusedPort();
  gateway = await startGateway(
    `
logging:
  level: trace
  redact_headers: [X-Api-Credential]
  redact_query: [api_key]
routes:
  - name: open
    match: { path_prefix: /open }
    upstream: { url: "${upstream.url}" }
    auth: { public: true }
  - name: protected
    match: { path_prefix: /protected }
    upstream: { url: "${upstream.url}" }
  - name: down
    match: { path_prefix: /down }
    upstream: { url: "http://127.0.0.1:${deadPort}" }
    auth: { public: true }
`,
    { logLevel: "trace" },
  );
});

afterAll(async () => {
  await gateway.stop();
  await upstream.close();
});

const credentials = {
  Authorization: `Bearer ${BEARER_SECRET}`,
  "X-Api-Credential": HEADER_SECRET,
  Cookie: `session=${COOKIE_SECRET}`,
};

/** Sends a request with every credential and waits for its access log line. */
async function logged(
  path: string,
  expectedStatus: number | number[],
  headers: Record<string, string> = credentials,
): Promise<Record<string, unknown>> {
  const id = `log-test-${Math.random().toString(36).slice(2)}`;
  const res = await send(gateway.addresses.proxy.port, {
    path: `${path}?api_key=${QUERY_SECRET}&page=2`,
    headers: { ...headers, "X-Request-Id": id },
  });
  expect([expectedStatus].flat()).toContain(res.status);
  let line: Record<string, unknown> | undefined;
  await expect
    .poll(() => {
      line = gateway.logLines().find((l) => l.msg === "request" && l.req_id === id);
      return line;
    })
    .toBeDefined();
  return line!;
}

function expectNoSecretInLog(): void {
  const text = gateway.logText();
  for (const secret of SECRETS) expect(text).not.toContain(secret);
  // nor a recognizable part of one
  for (const secret of SECRETS) expect(text).not.toContain(secret.slice(-12));
}

describe("no credential in the log at level trace", () => {
  it("on a proxied request (the upstream does get the credentials)", async () => {
    const line = await logged("/open/items", 200);
    expect(line).toMatchObject({
      route: "open",
      path: "/open/items",
      query: "?api_key=[REDACTED]&page=2",
      status: 200,
    });
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe(`/open/items?api_key=${QUERY_SECRET}&page=2`);
    expect(seen.headers["x-api-credential"]).toBe(HEADER_SECRET);
    expectNoSecretInLog();
  });

  it("on a request refused by authentication", async () => {
    const line = await logged("/protected/items", 401);
    expect(line).toMatchObject({
      route: "protected",
      query: "?api_key=[REDACTED]&page=2",
      error: "UNAUTHORIZED",
    });
    expectNoSecretInLog();
  });

  it("on a request with a well-formed but unknown key", async () => {
    const line = await logged("/protected/items", [401, 403], {
      ...credentials,
      Authorization: `Bearer ${WELL_FORMED_KEY}`,
    });
    expect(line).toMatchObject({ route: "protected", query: "?api_key=[REDACTED]&page=2" });
    expectNoSecretInLog();
  });

  it("on a request whose upstream is down", async () => {
    const line = await logged("/down/items", 502);
    expect(line).toMatchObject({ route: "down", error: "BAD_GATEWAY" });
    expectNoSecretInLog();
  });

  it("on a request with no route", async () => {
    const line = await logged("/elsewhere", 404);
    expect(line).toMatchObject({ error: "NOT_FOUND", query: "?api_key=[REDACTED]&page=2" });
    expectNoSecretInLog();
  });

  it("on a request refused as malformed", async () => {
    await logged("/open/%2e%2e/protected", 400);
    expectNoSecretInLog();
  });

  it("logged below info level (so the checks above saw the verbose output too)", () => {
    const levels = new Set(gateway.logLines().map((l) => l.level));
    expect(levels.has("debug")).toBe(true);
    expect(gateway.logLines().filter((l) => l.msg === "request").length).toBeGreaterThanOrEqual(5);
  });
});
