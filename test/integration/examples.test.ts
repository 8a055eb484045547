/**
 * The shipped example configurations keep the contracts their products'
 * authentication guides document (../shared/seeds/*.txt): exact status codes
 * and bodies for missing, malformed, unknown, revoked and plan-limited keys,
 * and keys in the documented format. Each runs unmodified from
 * config/examples, with only the environment variables it reads set.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  ADMIN_TOKEN,
  createKey,
  proxyRequest,
  randomGigaKey,
  randomRpKey,
  revokeKey,
} from "../helpers/keys.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

const EXAMPLES = fileURLToPath(new URL("../../config/examples/", import.meta.url));

async function startExample(file: string, upstreamVariable: string, upstreamUrl: string) {
  const dataDir = await mkdtemp(join(tmpdir(), "keygate-example-"));
  const text = await readFile(join(EXAMPLES, file), "utf8");
  const gateway = await startGateway(text, {
    env: {
      KEYGATE_HOST: "127.0.0.1",
      KEYGATE_PORT: "0",
      KEYGATE_ADMIN_HOST: "127.0.0.1",
      KEYGATE_ADMIN_PORT: "0",
      KEYGATE_DATA_DIR: dataDir,
      KEYGATE_ADMIN_TOKEN: ADMIN_TOKEN,
      [upstreamVariable]: upstreamUrl,
    },
  });
  return {
    gateway,
    stop: async () => {
      await gateway.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

describe("config/examples/reelplus.yaml", () => {
  const BODY_401 = '{"error":{"code":"UNAUTHORIZED","message":"Missing or invalid Authorization header"}}';
  const BODY_403_KEY =
    '{"error":{"code":"INVALID_API_KEY","message":"API key does not exist or has been revoked"}}';
  const BODY_403_PLAN = '{"error":{"code":"PLAN_LIMIT","message":"Your plan does not include API access"}}';
  const PATH = "/api/v1/analytics/summary";

  let upstream: TestUpstream;
  let example: Awaited<ReturnType<typeof startExample>>;
  let gateway: TestGateway;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream();
    example = await startExample("reelplus.yaml", "REELPLUS_UPSTREAM", upstream.url);
    gateway = example.gateway;
    port = gateway.addresses.proxy.port;
  });
  afterAll(async () => {
    await example?.stop();
    await upstream?.close();
  });

  it("creates keys in the documented format: rp_ + 64 lower-case hex, 10-character prefix", async () => {
    const created = await createKey(gateway.adminUrl, { label: "Production Dashboard", plan: "pro" });
    expect(created.key).toMatch(/^rp_[0-9a-f]{64}$/);
    expect(created.prefix).toBe(created.key.slice(0, 10));
    const answer = await proxyRequest(port, PATH, { key: created.key });
    expect(answer.status).toBe(200);
    const seen = upstream.requests[upstream.requests.length - 1]!;
    expect(seen.url).toBe(PATH);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers["x-keygate-key-label"]).toBe("Production%20Dashboard");
  });

  it("401 UNAUTHORIZED for a missing or invalid Authorization header", async () => {
    const cases: Record<string, string>[] = [
      {},
      { authorization: `Basic ${Buffer.from("a:b").toString("base64")}` },
      { authorization: "Bearer" },
      { authorization: "Bearer rp_your_api_key_here" }, // the guide's placeholder is not a key
      { authorization: `Bearer giga_${"a".repeat(32)}` }, // another product's format
      { authorization: `Bearer rp_${"f".repeat(63)}` },
    ];
    for (const headers of cases) {
      const answer = await proxyRequest(port, PATH, { headers });
      expect(answer.status, JSON.stringify(headers)).toBe(401);
      expect(answer.text).toBe(BODY_401);
      expect(answer.headers["content-type"]).toBe("application/json");
    }
  });

  it("403 INVALID_API_KEY for a key that does not exist or has been revoked (same body)", async () => {
    const unknown = await proxyRequest(port, PATH, { key: randomRpKey() });
    // The guide's own example key is well-formed and unknown here.
    const example = await proxyRequest(port, PATH, {
      key: "rp_04fa44e60791f792fd44c279b0daa384b3fb3eb81709568d965ebe285c211acb",
    });
    const created = await createKey(gateway.adminUrl, { label: "Revoke me", plan: "business" });
    expect((await proxyRequest(port, PATH, { key: created.key })).status).toBe(200);
    await revokeKey(gateway.adminUrl, created.id);
    const revoked = await proxyRequest(port, PATH, { key: created.key });
    for (const answer of [unknown, example, revoked]) {
      expect(answer.status).toBe(403);
      expect(answer.text).toBe(BODY_403_KEY);
    }
  });

  it("403 PLAN_LIMIT for a plan without API access (free)", async () => {
    const created = await createKey(gateway.adminUrl, { label: "Free account", plan: "free" });
    const before = upstream.requests.length;
    const answer = await proxyRequest(port, PATH, { key: created.key });
    expect(answer.status).toBe(403);
    expect(answer.text).toBe(BODY_403_PLAN);
    expect(upstream.requests.length).toBe(before);
  });
});

describe("config/examples/gigareels.yaml", () => {
  const BODY_401 = '{"error":"Invalid API key"}';
  const BODY_403 = '{"error":"Insufficient permissions for this operation"}';

  let upstream: TestUpstream;
  let example: Awaited<ReturnType<typeof startExample>>;
  let gateway: TestGateway;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream();
    example = await startExample("gigareels.yaml", "GIGAREELS_UPSTREAM", upstream.url);
    gateway = example.gateway;
    port = gateway.addresses.proxy.port;
  });
  afterAll(async () => {
    await example?.stop();
    await upstream?.close();
  });

  const render = (headers: Record<string, string>) =>
    proxyRequest(port, "/api/render", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ type: "educational-brainrot", prompt: "Explain quantum physics" }),
    });

  it("creates keys in the documented format (giga_ + 32 alphanumeric) that work on every documented endpoint", async () => {
    const created = await createKey(gateway.adminUrl, { label: "CLI", plan: "standard" });
    expect(created.key).toMatch(/^giga_[A-Za-z0-9]{32}$/);
    const auth = { authorization: `Bearer ${created.key}` };
    expect((await render(auth)).status).toBe(200);
    expect(upstream.requests[upstream.requests.length - 1]).toMatchObject({
      method: "POST",
      url: "/api/render",
    });
    expect((await proxyRequest(port, "/api/render/status/task_123", { headers: auth })).status).toBe(200);
    expect((await proxyRequest(port, "/api/social-media/accounts/42", { headers: auth })).status).toBe(200);
    expect(upstream.requests[upstream.requests.length - 1]!.headers.authorization).toBeUndefined();
  });

  it('401 {"error":"Invalid API key"} for a missing, malformed or unknown key', async () => {
    const cases: Record<string, string>[] = [
      {},
      { authorization: "Bearer your-api-key-here" },
      { authorization: "Bearer giga_your_development_key_here" },
      { authorization: `Bearer rp_${"a".repeat(64)}` },
      { authorization: `Bearer ${randomGigaKey()}` }, // well-formed, unknown
    ];
    for (const headers of cases) {
      const answer = await render(headers);
      expect(answer.status, JSON.stringify(headers)).toBe(401);
      expect(answer.text).toBe(BODY_401);
    }
    const revokedKey = await createKey(gateway.adminUrl, { label: "Revoked", plan: "standard" });
    await revokeKey(gateway.adminUrl, revokedKey.id);
    const revoked = await render({ authorization: `Bearer ${revokedKey.key}` });
    expect(revoked.status).toBe(401);
    expect(revoked.text).toBe(BODY_401);
  });

  it('403 {"error":"Insufficient permissions for this operation"} for a plan without access', async () => {
    const created = await createKey(gateway.adminUrl, { label: "Suspended", plan: "suspended" });
    const before = upstream.requests.length;
    const answer = await render({ authorization: `Bearer ${created.key}` });
    expect(answer.status).toBe(403);
    expect(answer.text).toBe(BODY_403);
    expect(upstream.requests.length).toBe(before);
  });

  it("does not accept ReelPlus-format keys (each example accepts its own format only)", async () => {
    expect((await render({ authorization: `Bearer ${randomRpKey()}` })).status).toBe(401);
  });
});
