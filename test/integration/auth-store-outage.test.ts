import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  ADMIN_TOKEN,
  createKey,
  proxyRequest,
  randomRpKey,
  redisStoreYaml,
  sha256,
  waitUntil,
} from "../helpers/keys.js";
import {
  type DedicatedRedisHandle,
  snapshotNamespace,
  startDedicatedRedis,
  uniqueNamespace,
} from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

const STORE_UNAVAILABLE = JSON.stringify({
  error: { code: "STORE_UNAVAILABLE", message: "Service temporarily unavailable" },
});

let redis: DedicatedRedisHandle;
let upstream: TestUpstream;
let gateway: TestGateway;
let namespace: string;

beforeAll(async () => {
  redis = await startDedicatedRedis();
  namespace = uniqueNamespace("outage");
  upstream = await startUpstream();
  gateway = await startGateway(`
admin: { tokens: ["${ADMIN_TOKEN}"] }
keys:
  cache: { ttl_ms: 60000, negative_ttl_ms: 100 }
plans:
  pro: { api_access: true }
${redisStoreYaml(redis.url, namespace, 200)}
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
`);
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  await redis?.stop();
});

/** Puts the namespace back after the restart, as a persistent Redis would keep it. */
function snapshot(): Promise<() => Promise<void>> {
  return snapshotNamespace(redis.url, namespace);
}

async function readyz(): Promise<number> {
  return (await fetch(`${gateway.adminUrl}/readyz`)).status;
}

describe("key store outage", () => {
  it("answers 503 for uncached keys while Redis is down, /readyz is 503, and recovers by itself", async () => {
    const port = gateway.addresses.proxy.port;
    const fresh = await createKey(gateway.adminUrl, { label: "Never used before the outage", plan: "pro" });
    const second = await createKey(gateway.adminUrl, { label: "Also uncached", plan: "pro" });
    expect(await readyz()).toBe(200);

    const restore = await snapshot();
    await redis.pause();
    const forwardedBefore = upstream.requests.length;

    // Uncached keys (real ones and unknown ones): 503, fast, several times over.
    for (const key of [fresh.key, second.key, randomRpKey(), fresh.key, randomRpKey()]) {
      const started = performance.now();
      const answer = await proxyRequest(port, "/api/x", { key });
      const elapsed = performance.now() - started;
      expect(answer.status, answer.text).toBe(503);
      expect(answer.text).toBe(STORE_UNAVAILABLE);
      expect(elapsed).toBeLessThan(2_000);
    }
    // Concurrent requests for one uncached key: all 503.
    const burst = await Promise.all(
      Array.from({ length: 10 }, () => proxyRequest(port, "/api/x", { key: second.key })),
    );
    expect(burst.map((a) => a.status)).toEqual(Array(10).fill(503));
    expect(upstream.requests.length).toBe(forwardedBefore);

    // Still no credential check changed: a malformed key is a 401 without the store.
    expect((await proxyRequest(port, "/api/x", { key: "rp_short" })).status).toBe(401);
    expect(await readyz()).toBe(503);
    const body = await (await fetch(`${gateway.adminUrl}/readyz`)).json();
    expect(body).toMatchObject({ failing: ["key_store"] });

    await redis.resume();
    await restore();
    let statuses: number[] = [];
    await waitUntil(
      "the gateway to serve again after Redis came back",
      async () => {
        const answer = await proxyRequest(port, "/api/x", { key: fresh.key });
        statuses.push(answer.status);
        return answer.status === 200;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    // Until it recovered, only 503s: never a 401 or 403 for a good key.
    expect(statuses.slice(0, -1).every((s) => s === 503)).toBe(true);
    statuses = [];
    expect((await proxyRequest(port, "/api/x", { key: second.key })).status).toBe(200);
    expect((await proxyRequest(port, "/api/x", { key: randomRpKey() })).status).toBe(403);
    await waitUntil("/readyz to be 200", async () => (await readyz()) === 200, { timeoutMs: 5_000 });

    // Outage errors are logged without keys or hashes.
    const logs = gateway.logText();
    for (const key of [fresh.key, second.key]) {
      expect(logs).not.toContain(key);
      expect(logs).not.toContain(sha256(key));
    }
  });
});
