/**
 * The failed-authentication throttle (`auth.failed_attempts`) with the Redis
 * store: after `limit` failed authentications from one client address, that
 * address gets 429 with Retry-After, without any store lookup of the keys it
 * presents (Redis MONITOR sees no command of the gateway's namespace). The
 * throttle is per address: another address is unaffected. From the throttled
 * address, a key this instance has already verified still passes (it costs no
 * lookup); any other key gets 429.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  ADMIN_TOKEN,
  createKey,
  proxyRequest,
  randomRpKey,
  redisStoreYaml,
  sha256,
  sleep,
} from "../helpers/keys.js";
import { dropNamespace, metricsText, metricValue } from "../helpers/ratelimit.js";
import { type NamespaceWatch, uniqueNamespace, watchNamespace } from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

const LIMIT = 5;
const INVALID_API_KEY = JSON.stringify({
  error: { code: "INVALID_API_KEY", message: "API key does not exist or has been revoked" },
});

let redisUrl: string;
let upstream: TestUpstream;
let gateway: TestGateway;
let namespace: string;
let watch: NamespaceWatch;
/** Every command Redis ran that names our namespace in its arguments. */

beforeAll(async () => {
  redisUrl = inject("redisUrl");
  namespace = uniqueNamespace("failed-auth");
  upstream = await startUpstream();
  gateway = await startGateway(`
admin: { tokens: ["${ADMIN_TOKEN}"] }
auth: { failed_attempts: { limit: ${LIMIT}, window_ms: 60000 } }
# Loopback is a trusted proxy, so a test can speak for other client addresses with X-Forwarded-For.
trusted_proxies: ["127.0.0.1"]
plans:
  pro: {}
${redisStoreYaml(redisUrl, namespace)}
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
`);
  watch = await watchNamespace(redisUrl, namespace);
});

afterAll(async () => {
  await watch?.stop();
  await gateway?.stop();
  await upstream?.close();
  if (namespace) await dropNamespace(redisUrl, namespace);
});

describe("failed-authentication throttle", () => {
  it("after 5 unknown keys the address gets 429 with Retry-After and no store command", async () => {
    const seen = watch.seen;
    const port = gateway.addresses.proxy.port;
    const valid = await createKey(gateway.adminUrl, { label: "Valid", plan: "pro" });
    const uncached = await createKey(gateway.adminUrl, { label: "Uncached", plan: "pro" });
    // The valid key works, and is now in the gateway's cache.
    expect((await proxyRequest(port, "/api/ok", { key: valid.key })).status).toBe(200);
    await watch.caughtUp();
    await sleep(50);
    seen.length = 0;

    const unknown = Array.from({ length: LIMIT + 1 }, () => randomRpKey());
    for (const key of unknown.slice(0, LIMIT)) {
      const answer = await proxyRequest(port, "/api/guess", { key });
      expect(answer.status).toBe(403);
      expect(answer.text).toBe(INVALID_API_KEY);
    }
    await watch.caughtUp();
    // Each of them was looked up (the monitor sees the gateway's lookups).
    for (const key of unknown.slice(0, LIMIT)) {
      expect(seen.some((args) => args.includes(`${namespace}key:${sha256(key)}`))).toBe(true);
    }
    seen.length = 0;

    const forwardedBefore = upstream.requests.length;
    const throttled = await proxyRequest(port, "/api/guess", { key: unknown[LIMIT]! });
    expect(throttled.status).toBe(429);
    const retryAfter = Number(throttled.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(JSON.parse(throttled.text)).toEqual({
      error: { code: "RATE_LIMITED", message: `Rate limit exceeded. Try again in ${retryAfter} seconds.` },
    });

    // A key never verified here is throttled as well, without a lookup, even if it is valid.
    const uncachedThrottled = await proxyRequest(port, "/api/ok", { key: uncached.key });
    expect(uncachedThrottled.status).toBe(429);
    expect(Number(uncachedThrottled.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(upstream.requests.length).toBe(forwardedBefore);

    // Neither throttled request cost a Redis command.
    await watch.caughtUp();
    expect(seen).toEqual([]);

    // The key this instance already verified still passes: it needs no lookup.
    const cachedValid = await proxyRequest(port, "/api/ok", { key: valid.key });
    expect(cachedValid.status).toBe(200);
    expect(upstream.requests.length).toBe(forwardedBefore + 1);
    await watch.caughtUp();
    expect(seen.some((args) => args.some((arg) => arg.startsWith(`${namespace}key:`)))).toBe(false);

    // Another address is not throttled: its valid key passes, its unknown key is looked up and refused.
    const other = { "x-forwarded-for": "203.0.113.7" };
    expect((await proxyRequest(port, "/api/ok", { key: valid.key, headers: other })).status).toBe(200);
    const otherUnknown = randomRpKey();
    const refused = await proxyRequest(port, "/api/guess", { key: otherUnknown, headers: other });
    expect(refused.status).toBe(403);
    await watch.caughtUp();
    expect(seen.some((args) => args.includes(`${namespace}key:${sha256(otherUnknown)}`))).toBe(true);

    const metrics = await metricsText(gateway.adminUrl);
    expect(metricValue(metrics, "keygate_authentications_total", { result: "throttled" })).toBe(2);
    // The valid key passed three times: first, cached while throttled, and from the other address.
    expect(metricValue(metrics, "keygate_authentications_total", { result: "ok" })).toBe(3);
    // 5 guesses from loopback + 1 from the other address; the throttled requests were never looked up.
    expect(metricValue(metrics, "keygate_authentications_total", { result: "invalid_key" })).toBe(LIMIT + 1);
    // The throttle is not a rate-limit decision.
    expect(
      metricValue(metrics, "keygate_ratelimit_decisions_total", { route: "api", result: "rejected" }),
    ).toBe(0);
  });
});
