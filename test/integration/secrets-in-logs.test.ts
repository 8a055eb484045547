/**
 * No log line, at any level down to trace, contains a full API key, a key's
 * SHA-256 hash or the admin token: a whole run (create, authenticate with
 * success / unknown / revoked / malformed keys through every key source,
 * rotate, import, usage, shutdown) is logged at trace and searched for every
 * secret it handled. Runs once on the embedded store and once on Redis.
 */
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  ADMIN_TOKEN,
  adminCall,
  createKey,
  type KeyView,
  proxyRequest,
  randomGigaKey,
  randomRpKey,
  redisStoreYaml,
  revokeKey,
  sha256,
  waitUntil,
} from "../helpers/keys.js";
import { uniqueNamespace } from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

const namespaces: string[] = [];

afterAll(async () => {
  if (namespaces.length === 0) return;
  const redis = new Redis(inject("redisUrl"), { lazyConnect: true });
  await redis.connect();
  for (const ns of namespaces) {
    const keys = await redis.keys(`${ns}*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  redis.disconnect();
});

function config(upstreamUrl: string, store: string): string {
  return `
logging: { level: trace }
admin: { tokens: ["${ADMIN_TOKEN}"] }
auth: { failed_attempts: { limit: 100000 } }
keys:
  last_used_flush_ms: 50
  cache: { ttl_ms: 200, negative_ttl_ms: 100 }
plans:
  pro: { api_access: true }
  free: { api_access: false }
${store}
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstreamUrl}" }
    auth: { header: x-api-key, query: api_key }
`;
}

async function scenario(gateway: TestGateway): Promise<{ secrets: Map<string, string>; logs: string }> {
  const secrets = new Map<string, string>();
  const remember = (name: string, key: string) => {
    secrets.set(`${name} (key)`, key);
    secrets.set(`${name} (sha256)`, sha256(key));
  };
  const port = gateway.addresses.proxy.port;
  const url = gateway.adminUrl;

  const good = await createKey(url, { label: "Logged key", plan: "pro" });
  remember("good", good.key);
  const gigaKey = await createKey(url, { label: "Giga key", plan: "pro", format: "gigareels" });
  remember("giga", gigaKey.key);
  const free = await createKey(url, { label: "Free key", plan: "free" });
  remember("free", free.key);
  const doomed = await createKey(url, { label: "Doomed key", plan: "pro" });
  remember("revoked", doomed.key);

  // Success, through every key source.
  expect((await proxyRequest(port, "/api/ok", { key: good.key })).status).toBe(200);
  expect((await proxyRequest(port, "/api/ok", { headers: { "x-api-key": good.key } })).status).toBe(200);
  expect((await proxyRequest(port, `/api/ok?api_key=${good.key}&x=1`)).status).toBe(200);
  expect((await proxyRequest(port, "/api/ok", { key: gigaKey.key })).status).toBe(200);
  expect((await proxyRequest(port, "/api/ok", { key: doomed.key })).status).toBe(200);
  // Plan limit.
  expect((await proxyRequest(port, "/api/free", { key: free.key })).status).toBe(403);
  // Unknown keys.
  const unknown = randomRpKey();
  remember("unknown", unknown);
  const unknownGiga = randomGigaKey();
  remember("unknown giga", unknownGiga);
  expect((await proxyRequest(port, "/api/unknown", { key: unknown })).status).toBe(403);
  expect((await proxyRequest(port, `/api/unknown?api_key=${unknownGiga}`)).status).toBe(403);
  // Revoked.
  await revokeKey(url, doomed.id);
  expect((await proxyRequest(port, "/api/revoked", { key: doomed.key })).status).toBe(403);
  expect((await proxyRequest(port, "/api/revoked", { headers: { "x-api-key": doomed.key } })).status).toBe(
    403,
  );
  // Malformed (one character off a real key) and ambiguous.
  const malformed = `${good.key}0`;
  remember("malformed", malformed);
  expect((await proxyRequest(port, "/api/bad", { key: malformed })).status).toBe(401);
  expect(
    (await proxyRequest(port, "/api/bad", { key: good.key, headers: { "x-api-key": good.key } })).status,
  ).toBe(401);
  expect(
    (
      await proxyRequest(port, "/api/bad", {
        headers: { authorization: [`Bearer ${good.key}`, `Bearer ${good.key}`] },
      })
    ).status,
  ).toBe(401);

  // Rotate, with and without grace.
  const graceful = await adminCall<KeyView & { key: string }>(url, "POST", `/v1/keys/${good.id}/rotate`, {
    grace_seconds: 60,
  });
  expect(graceful.status).toBe(201);
  remember("rotated (grace)", graceful.body.key);
  const immediate = await adminCall<KeyView & { key: string }>(
    url,
    "POST",
    `/v1/keys/${gigaKey.id}/rotate`,
    {},
  );
  expect(immediate.status).toBe(201);
  remember("rotated (no grace)", immediate.body.key);
  expect((await proxyRequest(port, "/api/rotated", { key: graceful.body.key })).status).toBe(200);
  expect((await proxyRequest(port, "/api/rotated", { key: good.key })).status).toBe(200);
  expect((await proxyRequest(port, "/api/rotated", { key: gigaKey.key })).status).toBe(403);

  // Import: good entries, a duplicate and a broken one.
  const imported = [randomRpKey(), randomRpKey()];
  for (const [i, key] of imported.entries()) remember(`imported ${i}`, key);
  const importAnswer = await adminCall<{ imported: number; skipped: number; errors: unknown[] }>(
    url,
    "POST",
    "/v1/keys/import",
    {
      keys: [
        ...imported.map((key, i) => ({
          hash: sha256(key),
          prefix: key.slice(0, 10),
          label: `Imp ${i}`,
          plan: "pro",
        })),
        { hash: sha256(imported[0]!), prefix: "rp_dup", label: "Dup", plan: "pro" },
        { hash: sha256(imported[0]!).toUpperCase(), prefix: "rp_bad", label: "Bad", plan: "pro" },
        { hash: sha256(imported[1]!), prefix: "rp_nope", label: "No plan", plan: "gold" },
      ],
    },
  );
  expect(importAnswer.body).toMatchObject({ imported: 2, skipped: 1 });
  expect(importAnswer.body.errors).toHaveLength(2);
  for (const key of imported) expect((await proxyRequest(port, "/api/imported", { key })).status).toBe(200);

  // Admin reads, and a wrong admin token.
  expect((await adminCall(url, "GET", "/v1/keys")).status).toBe(200);
  expect((await adminCall(url, "GET", `/v1/keys/${good.id}/usage`)).status).toBe(200);
  const wrongToken = "not-the-admin-token-0123456789";
  secrets.set("wrong admin token", wrongToken);
  expect((await adminCall(url, "GET", "/v1/keys", undefined, wrongToken)).status).toBe(401);
  secrets.set("admin token", ADMIN_TOKEN);

  // Let the last-used flush run, then shut down so every line is written.
  await waitUntil(
    "a last-used flush",
    async () => (await adminCall<KeyView>(url, "GET", `/v1/keys/${good.id}`)).body.last_used_at !== null,
  );
  await gateway.stop();
  return { secrets, logs: gateway.logText() };
}

describe.each(["embedded", "redis"])("no secret in any log line (%s store)", (storeType) => {
  let upstream: TestUpstream | undefined;
  let gateway: TestGateway | undefined;

  afterAll(async () => {
    await gateway?.stop();
    await upstream?.close();
  });

  it("logs a whole key lifecycle at trace level without a key, a hash or the admin token", async () => {
    upstream = await startUpstream();
    let store = "";
    if (storeType === "redis") {
      const ns = uniqueNamespace("logs");
      namespaces.push(ns);
      store = redisStoreYaml(inject("redisUrl"), ns);
    }
    gateway = await startGateway(config(upstream.url, store), { logLevel: "trace" });
    const { secrets, logs } = await scenario(gateway);

    // The run was really logged: admin actions, requests with their outcomes, shutdown.
    const lines = logs.split("\n").filter(Boolean);
    const messages = lines.map((line) => (JSON.parse(line) as { msg: string }).msg);
    for (const msg of ["key created", "key revoked", "key rotated", "keys imported", "request", "stopped"]) {
      expect(messages, msg).toContain(msg);
    }
    const errors = lines.map((line) => (JSON.parse(line) as { error?: string }).error).filter(Boolean);
    expect(errors).toEqual(expect.arrayContaining(["UNAUTHORIZED", "INVALID_API_KEY", "PLAN_LIMIT"]));
    expect(lines.length).toBeGreaterThan(25);

    const lower = logs.toLowerCase();
    for (const [name, secret] of secrets) {
      expect(lower.includes(secret.toLowerCase()), `${name} appears in the logs`).toBe(false);
    }
    // Not even a large piece of a key body (the 10-character display prefix is fine).
    for (const [name, secret] of secrets) {
      if (!name.endsWith("(key)")) continue;
      const body = secret.slice(10);
      for (let i = 0; i + 16 <= body.length; i += 8) {
        expect(logs.includes(body.slice(i, i + 16)), `part of ${name} appears in the logs`).toBe(false);
      }
    }
  });
});
