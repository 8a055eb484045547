/**
 * The rate-limit store goes away mid-traffic (a dedicated Redis the test
 * stops): for a key already in the local cache, a `fail: closed` route
 * answers 503 and a `fail: open` route forwards without limits, both fast
 * (bounded by the configured time budget, never hanging); the circuit breaker
 * opens; fail-open is logged once per interval; and when Redis is back both
 * routes are rate limited again by themselves.
 */
import { Agent } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { ADMIN_TOKEN, createKey, redisStoreYaml, waitUntil } from "../helpers/keys.js";
import {
  type Answer,
  call,
  legacyHeaders,
  metricsText,
  metricValue,
  percentile,
} from "../helpers/ratelimit.js";
import {
  type DedicatedRedisHandle,
  snapshotNamespace,
  startDedicatedRedis,
  uniqueNamespace,
} from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

/** store.redis.command_timeout_ms: the budget of one request-path store call. */
const BUDGET_MS = 50;
/** A bound against hangs (ten budgets), not a speed target. */
const P99_BOUND_MS = 10 * BUDGET_MS;
const REQUESTS = 100;
const FAIL_OPEN_WARNING = "rate-limit store unavailable: forwarding without limits (fail: open)";
const STORE_UNAVAILABLE = JSON.stringify({
  error: { code: "STORE_UNAVAILABLE", message: "Service temporarily unavailable" },
});

let redis: DedicatedRedisHandle;
let upstream: TestUpstream;
let gateway: TestGateway;
let namespace: string;

beforeAll(async () => {
  redis = await startDedicatedRedis();
  namespace = uniqueNamespace("rl-outage");
  upstream = await startUpstream();
  gateway = await startGateway(
    `
admin: { tokens: ["${ADMIN_TOKEN}"] }
keys:
  # The key stays cached through the outage; unknown hashes are forgotten quickly.
  cache: { ttl_ms: 60000, negative_ttl_ms: 100 }
rate_limit:
  breaker: { failures: 5, cooldown_ms: 1000 }
  fail_open_log_interval_ms: 60000
plans:
  pro:
    limits: [{ name: api, windows: { minute: 100000 } }]
${redisStoreYaml(redis.url, namespace, BUDGET_MS)}
routes:
  - name: strict
    match: { path_prefix: /strict }
    upstream: { url: "\${UPSTREAM}" }
    rate_limit: { fail: closed }
  - name: lenient
    match: { path_prefix: /lenient }
    upstream: { url: "\${UPSTREAM}" }
    rate_limit: { fail: open }
`,
    { logLevel: "warn", env: { UPSTREAM: upstream.url } },
  );
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

async function circuitOpen(): Promise<number> {
  return metricValue(await metricsText(gateway.adminUrl), "keygate_store_circuit_open");
}

describe("rate-limit store outage", () => {
  it("closed → 503, open → 200, both fast; breaker opens; one fail-open warning; recovery by itself", async () => {
    const port = gateway.addresses.proxy.port;
    const key = await createKey(gateway.adminUrl, { label: "Outage", plan: "pro" });
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    try {
      // Both routes rate limited while Redis is up, and the key is now in the gateway's cache.
      for (const path of ["/strict/x", "/lenient/x"]) {
        const answer = await call(port, path, { key: key.key, agent });
        expect(answer.status, answer.text).toBe(200);
        expect(legacyHeaders(answer).limit).toBe(100000);
      }
      expect(await circuitOpen()).toBe(0);

      const restore = await snapshot();
      await redis.pause();
      const forwardedBefore = upstream.requests.length;

      const strict: Answer[] = [];
      const lenient: Answer[] = [];
      const strictMs: number[] = [];
      const lenientMs: number[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        let started = performance.now();
        strict.push(await call(port, `/strict/${i}`, { key: key.key, agent }));
        strictMs.push(performance.now() - started);
        started = performance.now();
        lenient.push(await call(port, `/lenient/${i}`, { key: key.key, agent }));
        lenientMs.push(performance.now() - started);
      }

      expect(strict.map((a) => a.status)).toEqual(Array(REQUESTS).fill(503));
      expect(new Set(strict.map((a) => a.text))).toEqual(new Set([STORE_UNAVAILABLE]));
      expect(lenient.map((a) => a.status)).toEqual(Array(REQUESTS).fill(200));
      // Forwarded without limits: no rate-limit headers, and only the lenient route reached the upstream.
      expect(lenient.every((a) => a.headers["x-ratelimit-limit"] === undefined)).toBe(true);
      const forwarded = upstream.requests.slice(forwardedBefore);
      expect(forwarded).toHaveLength(REQUESTS);
      expect(forwarded.every((r) => r.url.startsWith("/lenient/"))).toBe(true);

      const p99 = { strict: percentile(strictMs, 99), lenient: percentile(lenientMs, 99) };
      expect(p99.strict, `p99 of fail-closed answers (ms), budget ${BUDGET_MS}`).toBeLessThan(P99_BOUND_MS);
      expect(p99.lenient, `p99 of fail-open answers (ms), budget ${BUDGET_MS}`).toBeLessThan(P99_BOUND_MS);

      const metrics = await metricsText(gateway.adminUrl);
      expect(metricValue(metrics, "keygate_store_circuit_open")).toBe(1);
      expect(
        metricValue(metrics, "keygate_ratelimit_decisions_total", { route: "strict", result: "fail_closed" }),
      ).toBe(REQUESTS);
      expect(
        metricValue(metrics, "keygate_ratelimit_decisions_total", { route: "lenient", result: "fail_open" }),
      ).toBe(REQUESTS);
      const warnings = gateway.logLines().filter((line) => line.msg === FAIL_OPEN_WARNING);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ level: "warn", route: "lenient" });

      await redis.resume();
      await restore();
      const resumedAt = performance.now();
      const seen: string[] = [];
      await waitUntil(
        "both routes to be rate limited again",
        async () => {
          const [a, b] = [
            await call(port, "/strict/back", { key: key.key, agent }),
            await call(port, "/lenient/back", { key: key.key, agent }),
          ];
          seen.push(`${a.status}/${b.status}`);
          return (
            a.status === 200 &&
            b.status === 200 &&
            legacyHeaders(a).limit === 100000 &&
            legacyHeaders(b).limit === 100000
          );
        },
        { timeoutMs: 5_000, intervalMs: 100 },
      );
      const recoveredMs = performance.now() - resumedAt;
      expect(recoveredMs, `recovered after ${Math.round(recoveredMs)} ms: ${seen.join(" ")}`).toBeLessThan(
        5_000,
      );
      // Counting again, in the restarted Redis.
      const after = await call(port, "/strict/counted", { key: key.key, agent });
      expect(after.status).toBe(200);
      expect(legacyHeaders(after).remaining).toBeLessThan(100000 - 1);
      await waitUntil("the breaker to close", async () => (await circuitOpen()) === 0, { timeoutMs: 2_000 });
      // Still the one warning: the interval (60 s) has not passed.
      expect(gateway.logLines().filter((line) => line.msg === FAIL_OPEN_WARNING)).toHaveLength(1);
    } finally {
      agent.destroy();
    }
  });
});
