/**
 * Authentication on the proxy through real HTTP to a recording upstream:
 * every way a credential can be missing or malformed (401 with a Bearer
 * challenge), unknown / revoked / expired keys (one byte-identical 403), a
 * plan without API access (403 PLAN_LIMIT), public routes, identity headers
 * (client copies removed, the HMAC signature verifiable by the upstream), and
 * the other key sources (a custom header, a query parameter).
 */
import { createHmac } from "node:crypto";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  ADMIN_TOKEN,
  createKey,
  type ProxyAnswer,
  proxyRequest,
  randomGigaKey,
  randomRpKey,
  revokeKey,
} from "../helpers/keys.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

const SECRET = "signature-secret-0123456789abcdef-0123";

const UNAUTHORIZED = JSON.stringify({
  error: { code: "UNAUTHORIZED", message: "Missing or invalid Authorization header" },
});
const INVALID_API_KEY = JSON.stringify({
  error: { code: "INVALID_API_KEY", message: "API key does not exist or has been revoked" },
});
const PLAN_LIMIT = JSON.stringify({
  error: { code: "PLAN_LIMIT", message: "Your plan does not include API access" },
});

let upstream: TestUpstream;
let gateway: TestGateway;
let port: number;
/** The gateway's clock: real time plus `clockOffset`, so a test can move past an expiry. */
let clockOffset = 0;

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startGateway(
    `
admin: { tokens: ["${ADMIN_TOKEN}"] }
auth:
  signature: { secret: "${SECRET}" }
  # This file sends many refused requests from one address on purpose: keep the throttle out of the way.
  failed_attempts: { limit: 100000 }
plans:
  pro: { api_access: true }
  free: { api_access: false }
routes:
  - name: public
    match: { path_prefix: /public }
    upstream: { url: "${upstream.url}" }
    auth: { public: true }
  - name: header
    match: { path_prefix: /hdr }
    upstream: { url: "${upstream.url}" }
    auth: { header: x-api-key }
  - name: authorization-header
    match: { path_prefix: /authz }
    upstream: { url: "${upstream.url}" }
    auth: { header: authorization }
  - name: query
    match: { path_prefix: /qry }
    upstream: { url: "${upstream.url}" }
    auth: { query: api_key }
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
`,
    { now: () => Date.now() + clockOffset },
  );
  port = gateway.addresses.proxy.port;
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
});

/** Runs `send` and returns its answer plus what reached the upstream meanwhile. */
async function through(send: () => Promise<ProxyAnswer>) {
  const before = upstream.requests.length;
  const answer = await send();
  return { answer, forwarded: upstream.requests.slice(before) };
}

function expectUnauthorized(answer: ProxyAnswer, error?: string): void {
  expect(answer.status, answer.text).toBe(401);
  expect(answer.text).toBe(UNAUTHORIZED);
  expect(answer.headers["content-type"]).toBe("application/json");
  const challenge = String(answer.headers["www-authenticate"] ?? "");
  expect(challenge).toMatch(/^Bearer realm="keygate"/);
  if (error) expect(challenge).toContain(`error="${error}"`);
}

/** Sends the request head verbatim on a raw socket and returns the raw response. */
function rawRequest(head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(head));
    let data = "";
    socket.on("data", (chunk) => {
      data += chunk.toString();
    });
    socket.once("end", () => resolve(data));
    socket.once("error", reject);
    socket.setTimeout(5_000, () => socket.destroy(new Error("raw request timed out")));
  });
}

describe("401 UNAUTHORIZED with a Bearer challenge, and nothing forwarded", () => {
  it("no Authorization header", async () => {
    const { answer, forwarded } = await through(() => proxyRequest(port, "/api/x"));
    expectUnauthorized(answer);
    expect(forwarded).toHaveLength(0);
  });

  it("another scheme (Basic)", async () => {
    const basic = `Basic ${Buffer.from(`user:${randomRpKey()}`).toString("base64")}`;
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/api/x", { headers: { authorization: basic } }),
    );
    expectUnauthorized(answer, "invalid_request");
    expect(forwarded).toHaveLength(0);
  });

  it.each([["Bearer "], ["Bearer"], ["bearer    "]])("an empty credential (%j)", async (value) => {
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/api/x", { headers: { authorization: value } }),
    );
    expectUnauthorized(answer, "invalid_request");
    expect(forwarded).toHaveLength(0);
  });

  it("two credentials in one header", async () => {
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/api/x", {
        headers: { authorization: `Bearer ${randomRpKey()} ${randomRpKey()}` },
      }),
    );
    expectUnauthorized(answer, "invalid_request");
    expect(forwarded).toHaveLength(0);
  });

  it("two Authorization headers (node:http sends both lines)", async () => {
    const key = (await createKey(gateway.adminUrl, { label: "Twice", plan: "pro" })).key;
    // Even two copies of a valid key: the request is ambiguous and refused.
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/api/x", { headers: { authorization: [`Bearer ${key}`, `Bearer ${key}`] } }),
    );
    expectUnauthorized(answer);
    expect(forwarded).toHaveLength(0);
  });

  it("two Authorization headers (raw socket, valid key first)", async () => {
    const key = (await createKey(gateway.adminUrl, { label: "Raw twice", plan: "pro" })).key;
    const raw = await rawRequest(
      "GET /api/raw HTTP/1.1\r\nHost: gateway.test\r\n" +
        `Authorization: Bearer ${key}\r\nAuthorization: Basic Zm9vOmJhcg==\r\nConnection: close\r\n\r\n`,
    );
    const [head, body] = raw.split("\r\n\r\n") as [string, string];
    expect(head).toMatch(/^HTTP\/1\.1 401 /);
    expect(head.toLowerCase()).toMatch(/\r\nwww-authenticate: bearer realm="keygate"/);
    expect(body).toBe(UNAUTHORIZED);
  });

  it.each([
    ["wrong prefix", `xx_${"a".repeat(64)}`],
    ["too short", `rp_${"a".repeat(63)}`],
    ["too long", `rp_${"a".repeat(65)}`],
    ["not hex", `rp_${"g".repeat(64)}`],
    ["upper-case hex", `rp_${"A".repeat(64)}`],
    ["giga_ too short", `giga_${"a".repeat(31)}`],
    ["giga_ not alphanumeric", `giga_${"a".repeat(31)}-`],
    ["not ASCII", `rp_${"é".repeat(64)}`],
  ])("a malformed key: %s", async (_name, key) => {
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/api/x", { headers: { authorization: `Bearer ${key}` } }),
    );
    expectUnauthorized(answer, "invalid_token");
    expect(forwarded).toHaveLength(0);
  });
});

describe("403 for keys that do not (or no longer) grant access", () => {
  it("unknown, revoked and expired keys get byte-identical 403 INVALID_API_KEY answers", async () => {
    const revoked = await createKey(gateway.adminUrl, { label: "Soon revoked", plan: "pro" });
    const expiring = await createKey(gateway.adminUrl, {
      label: "Soon expired",
      plan: "pro",
      expires_at: new Date(Date.now() + clockOffset + 60_000).toISOString(),
    });
    // Both work (and are cached) first.
    expect((await proxyRequest(port, "/api/x", { key: revoked.key })).status).toBe(200);
    expect((await proxyRequest(port, "/api/x", { key: expiring.key })).status).toBe(200);

    await revokeKey(gateway.adminUrl, revoked.id);
    clockOffset += 120_000; // the gateway's clock is now past expiring's expires_at

    const { answer: unknown, forwarded } = await through(() =>
      proxyRequest(port, "/api/x", { key: randomRpKey() }),
    );
    const unknownGiga = await proxyRequest(port, "/api/x", { key: randomGigaKey() });
    const revokedAnswer = await proxyRequest(port, "/api/x", { key: revoked.key });
    const expiredAnswer = await proxyRequest(port, "/api/x", { key: expiring.key });

    expect(forwarded).toHaveLength(0);
    for (const answer of [unknown, unknownGiga, revokedAnswer, expiredAnswer]) {
      expect(answer.status).toBe(403);
      expect(answer.text).toBe(INVALID_API_KEY);
      expect(answer.headers["content-type"]).toBe("application/json");
      expect(answer.headers["content-length"]).toBe(String(Buffer.byteLength(INVALID_API_KEY)));
      expect(answer.headers["www-authenticate"]).toBeUndefined();
    }
    expect(Buffer.from(revokedAnswer.text).equals(Buffer.from(unknown.text))).toBe(true);
    expect(Buffer.from(expiredAnswer.text).equals(Buffer.from(unknown.text))).toBe(true);
    // Same set of response headers too (request ids differ, names do not).
    const names = (a: ProxyAnswer) => Object.keys(a.headers).sort();
    expect(names(revokedAnswer)).toEqual(names(unknown));
    expect(names(expiredAnswer)).toEqual(names(unknown));
  });

  it("a key whose plan has no API access gets 403 PLAN_LIMIT", async () => {
    const free = await createKey(gateway.adminUrl, { label: "Free tier", plan: "free" });
    const { answer, forwarded } = await through(() => proxyRequest(port, "/api/x", { key: free.key }));
    expect(answer.status).toBe(403);
    expect(answer.text).toBe(PLAN_LIMIT);
    expect(forwarded).toHaveLength(0);
  });
});

describe("what reaches the upstream", () => {
  it("a public route needs no key, and client identity headers are removed", async () => {
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/public/status", {
        headers: {
          "x-keygate-key-id": "key_000000000000000000000000",
          "x-keygate-plan": "enterprise",
          "x-keygate-key-label": "Forged",
          "x-keygate-signature": "t=1,v1=00",
        },
      }),
    );
    expect(answer.status).toBe(200);
    expect(forwarded).toHaveLength(1);
    const headers = forwarded[0]!.headers;
    expect(headers["x-keygate-key-id"]).toBeUndefined();
    expect(headers["x-keygate-plan"]).toBeUndefined();
    expect(headers["x-keygate-key-label"]).toBeUndefined();
    expect(headers["x-keygate-signature"]).toBeUndefined();
  });

  it("identity headers sent by a client are replaced; the credential is stripped; the signature verifies", async () => {
    const label = "Équipe «Ops» / 東京 & co";
    const created = await createKey(gateway.adminUrl, { label, plan: "pro" });
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/api/v1/videos?limit=5", {
        key: created.key,
        headers: {
          "x-keygate-key-id": ["key_000000000000000000000000", "key_111111111111111111111111"],
          "X-Keygate-Plan": "enterprise",
          "x-keygate-key-label": "Forged",
          "x-keygate-signature": "t=1,v1=00",
          "x-request-id": "req-abc.123",
        },
      }),
    );
    expect(answer.status, answer.text).toBe(200);
    expect(forwarded).toHaveLength(1);
    const seen = forwarded[0]!;
    expect(seen.url).toBe("/api/v1/videos?limit=5");
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers["x-keygate-key-id"]).toBe(created.id);
    expect(seen.headers["x-keygate-plan"]).toBe("pro");
    expect(seen.headers["x-keygate-key-label"]).toBe(encodeURIComponent(label));
    expect(decodeURIComponent(String(seen.headers["x-keygate-key-label"]))).toBe(label);
    // One copy of each identity header, none of the client's.
    const rawNames = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const name of ["x-keygate-key-id", "x-keygate-plan", "x-keygate-key-label", "x-keygate-signature"]) {
      expect(rawNames.filter((n) => n === name)).toHaveLength(1);
    }
    expect(JSON.stringify(seen.rawHeaders)).not.toContain(created.key);

    // The upstream's check, exactly as documented in src/pipeline/identify.ts.
    const requestId = String(seen.headers["x-request-id"]);
    expect(requestId).toBe("req-abc.123");
    const signature = String(seen.headers["x-keygate-signature"]);
    const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature);
    expect(match, signature).not.toBeNull();
    const t = Number(match![1]);
    expect(Math.abs(t - Math.floor((Date.now() + clockOffset) / 1000))).toBeLessThanOrEqual(5);
    const expected = createHmac("sha256", SECRET)
      .update(`${t}\n${requestId}\n${created.id}\npro\n${seen.headers["x-keygate-key-label"]}`)
      .digest("hex");
    expect(match![2]).toBe(expected);
    // A forged identity would not verify.
    const forged = createHmac("sha256", SECRET)
      .update(`${t}\n${requestId}\n${created.id}\nenterprise\n${seen.headers["x-keygate-key-label"]}`)
      .digest("hex");
    expect(match![2]).not.toBe(forged);
  });

  it("a route with auth.header accepts the key there and strips it", async () => {
    const created = await createKey(gateway.adminUrl, { label: "Header key", plan: "pro" });
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/hdr/items", { headers: { "x-api-key": created.key } }),
    );
    expect(answer.status, answer.text).toBe(200);
    expect(forwarded[0]!.headers["x-api-key"]).toBeUndefined();
    expect(forwarded[0]!.headers.authorization).toBeUndefined();
    expect(forwarded[0]!.headers["x-keygate-key-id"]).toBe(created.id);

    // Bearer still works on that route, but a key in both places is ambiguous.
    expect((await proxyRequest(port, "/hdr/items", { key: created.key })).status).toBe(200);
    const both = await through(() =>
      proxyRequest(port, "/hdr/items", { key: created.key, headers: { "x-api-key": created.key } }),
    );
    expectUnauthorized(both.answer, "invalid_request");
    expect(both.forwarded).toHaveLength(0);
    // The header is not a key source on other routes.
    expectUnauthorized(await proxyRequest(port, "/api/items", { headers: { "x-api-key": created.key } }));
  });

  it("a route whose auth.header is Authorization takes a Bearer key once, not as a second credential", async () => {
    const created = await createKey(gateway.adminUrl, { label: "Authz key", plan: "pro" });
    const { answer, forwarded } = await through(() =>
      proxyRequest(port, "/authz/items", { key: created.key }),
    );
    expect(answer.status, answer.text).toBe(200);
    expect(forwarded[0]!.headers.authorization).toBeUndefined();
  });

  it("a route with auth.query accepts the key there and strips the parameter from the forwarded URL", async () => {
    const created = await createKey(gateway.adminUrl, { label: "Query key", plan: "pro" });
    const only = await through(() => proxyRequest(port, `/qry/items?api_key=${created.key}`));
    expect(only.answer.status, only.answer.text).toBe(200);
    expect(only.forwarded[0]!.url).toBe("/qry/items");

    const mixed = await through(() => proxyRequest(port, `/qry/items?a=1&api_key=${created.key}&b=2`));
    expect(mixed.answer.status).toBe(200);
    expect(mixed.forwarded[0]!.url).toBe("/qry/items?a=1&b=2");
    expect(mixed.forwarded[0]!.headers["x-keygate-key-id"]).toBe(created.id);

    const both = await through(() =>
      proxyRequest(port, `/qry/items?api_key=${created.key}`, { key: created.key }),
    );
    expectUnauthorized(both.answer, "invalid_request");
    expect(both.forwarded).toHaveLength(0);

    // The parameter is not a key source on other routes (and is forwarded untouched there).
    expectUnauthorized(await proxyRequest(port, `/api/items?api_key=${created.key}`));
  });
});
