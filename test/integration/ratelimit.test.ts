/**
 * Rate limiting through real HTTP, a real upstream and a real Redis (shared
 * by the run, one namespace per test):
 *
 * - exactness: three instances, 200 concurrent clients, limit 50/minute on one
 *   key → exactly 50 forwarded, 150 × 429 with consistent headers and body;
 * - all or nothing: a request refused by one window consumes no other window;
 * - the headers agree with the counters in Redis and with Redis TIME (legacy
 *   X-RateLimit-* and the IETF RateLimit-Policy / RateLimit fields);
 * - SCRIPT FLUSH between requests costs no request;
 * - plan permissions and a key's own limits (set through the admin API);
 * - shadow rules count and report but never refuse.
 */
import { Agent } from "node:http";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { ADMIN_TOKEN, createKey, redisStoreYaml } from "../helpers/keys.js";
import {
  type Answer,
  awaitWindowRoom,
  call,
  connectRedis,
  counterCount,
  counterKey,
  createKeyWithLimits,
  dropNamespace,
  HOUR_MS,
  legacyHeaders,
  MINUTE_MS,
  metricsText,
  metricValue,
  redisNow,
} from "../helpers/ratelimit.js";
import { uniqueNamespace } from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

let redisUrl: string;
let redis: Redis;
let upstream: TestUpstream;
const started: TestGateway[] = [];
const namespaces: string[] = [];

beforeAll(async () => {
  redisUrl = inject("redisUrl");
  redis = await connectRedis(redisUrl);
  upstream = await startUpstream();
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((g) => g.stop()));
  await Promise.all(namespaces.splice(0).map((ns) => dropNamespace(redisUrl, ns)));
});

afterAll(async () => {
  await upstream?.close();
  redis?.disconnect();
});

/** Starts `count` gateways sharing one fresh namespace; `body` holds plans, routes and extras. */
async function gateways(
  body: (upstreamUrl: string) => string,
  { count = 1, commandTimeoutMs = 1_000 } = {},
): Promise<{ namespace: string; instances: TestGateway[] }> {
  const namespace = uniqueNamespace("rl");
  namespaces.push(namespace);
  const yaml = `
admin: { tokens: ["${ADMIN_TOKEN}"] }
keys: { cache: { ttl_ms: 60000 } }
${redisStoreYaml(redisUrl, namespace, commandTimeoutMs)}
${body(upstream.url)}`;
  const instances: TestGateway[] = [];
  for (let i = 0; i < count; i++) {
    const gateway = await startGateway(yaml, { logLevel: "warn" });
    started.push(gateway);
    instances.push(gateway);
  }
  return { namespace, instances };
}

function apiRoute(upstreamUrl: string, name = "api", prefix = "/api"): string {
  return `  - name: ${name}
    match: { path_prefix: ${prefix} }
    upstream: { url: "${upstreamUrl}" }
`;
}

/** End of the epoch-aligned window of `windowMs` that contains `nowMs`, in ms. */
function windowEnd(nowMs: number, windowMs: number): number {
  return nowMs - (nowMs % windowMs) + windowMs;
}

function rateLimitedBody(seconds: number): string {
  return JSON.stringify({
    error: { code: "RATE_LIMITED", message: `Rate limit exceeded. Try again in ${seconds} seconds.` },
  });
}

describe("exact limits across instances", () => {
  it("3 instances, 200 concurrent clients, 50/minute on one key: exactly 50 admitted, 150 consistent 429s", async () => {
    const LIMIT = 50;
    const CLIENTS = 200;
    const { namespace, instances } = await gateways(
      (url) => `
plans:
  burst:
    limits: [{ name: api, windows: { minute: ${LIMIT} } }]
routes:
${apiRoute(url)}`,
      // A generous budget: 200 requests land at once on three gateways sharing this test's event loop.
      { count: 3, commandTimeoutMs: 2_000 },
    );
    const key = await createKey(instances[0]!.adminUrl, { label: "Burst", plan: "burst" });
    const ports = instances.map((g) => g.addresses.proxy.port);
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS, maxFreeSockets: CLIENTS });
    try {
      // The whole burst must fall inside one minute of the store's clock.
      const before = await awaitWindowRoom(redis, MINUTE_MS, 8_000);
      const reset = windowEnd(before, MINUTE_MS) / 1000;
      const forwardedBefore = upstream.requests.length;

      const answers = await Promise.all(
        Array.from({ length: CLIENTS }, (_, i) =>
          call(ports[i % ports.length]!, `/api/burst/${i}`, { key: key.key, agent }),
        ),
      );
      const after = await redisNow(redis);
      expect(windowEnd(after, MINUTE_MS) / 1000, "the burst crossed a minute boundary").toBe(reset);
      // Really concurrent: the agent opened a connection per client instead of queueing them.
      const opened = Object.values(agent.freeSockets).reduce((n, list) => n + (list?.length ?? 0), 0);
      expect(opened).toBeGreaterThan(CLIENTS * 0.75);

      const statuses = answers.map((a) => a.status);
      const admitted = answers.filter((a) => a.status === 200);
      const refused = answers.filter((a) => a.status === 429);
      expect(
        statuses.filter((s) => s !== 200 && s !== 429),
        "only 200 and 429 answers",
      ).toEqual([]);
      expect(admitted).toHaveLength(LIMIT);
      expect(refused).toHaveLength(CLIENTS - LIMIT);
      // Every instance took part in the burst, and the upstream saw exactly the admitted requests.
      for (let i = 0; i < ports.length; i++) {
        const mine = answers.filter((_, j) => j % ports.length === i);
        expect(mine.length).toBeGreaterThan(0);
      }
      expect(upstream.requests.length - forwardedBefore).toBe(LIMIT);
      expect(await counterCount(redis, counterKey(namespace, key.id, "api", "minute", LIMIT))).toBe(LIMIT);

      // Admitted answers: each saw a distinct count, from 49 left down to 0.
      const remaining = admitted.map((a) => legacyHeaders(a).remaining).sort((x, y) => x! - y!);
      expect(remaining).toEqual(Array.from({ length: LIMIT }, (_, i) => i));
      for (const answer of admitted) {
        const h = legacyHeaders(answer);
        expect(h.limit).toBe(LIMIT);
        expect(h.reset).toBe(reset);
        expect(h.retryAfter).toBeUndefined();
      }

      // Refused answers: limit, nothing left, the end of this minute, and a Retry-After that agrees.
      const latest = Math.ceil((reset * 1000 - before) / 1000);
      const earliest = Math.max(1, Math.ceil((reset * 1000 - after) / 1000));
      for (const answer of refused) {
        const h = legacyHeaders(answer);
        expect(h).toMatchObject({ limit: LIMIT, remaining: 0, reset });
        expect(h.retryAfter).toBeGreaterThanOrEqual(earliest);
        expect(h.retryAfter).toBeLessThanOrEqual(latest);
        expect(answer.headers["content-type"]).toBe("application/json");
        expect(answer.text).toBe(rateLimitedBody(h.retryAfter!));
      }
    } finally {
      agent.destroy();
    }
  });
});

describe("all or nothing", () => {
  it("a request refused by the hour window consumes nothing from the minute window", async () => {
    const { namespace, instances } = await gateways(
      (url) => `
plans:
  tight:
    limits: [{ name: api, windows: { minute: 10, hour: 2 } }]
routes:
${apiRoute(url)}`,
    );
    const gateway = instances[0]!;
    const port = gateway.addresses.proxy.port;
    const key = await createKey(gateway.adminUrl, { label: "All or nothing", plan: "tight" });
    const minuteKey = counterKey(namespace, key.id, "api", "minute", 10);
    const hourKey = counterKey(namespace, key.id, "api", "hour", 2);
    // Over a minute left in the hour, so the hour window ends after the minute window and a
    // Retry-After from it exceeds any minute's (waits up to 65 s, in one run of ~55).
    await awaitWindowRoom(redis, HOUR_MS, MINUTE_MS + 5_000);
    const now = await awaitWindowRoom(redis, MINUTE_MS, 5_000);
    const forwardedBefore = upstream.requests.length;

    expect((await call(port, "/api/one", { key: key.key })).status).toBe(200);
    expect((await call(port, "/api/two", { key: key.key })).status).toBe(200);
    expect(await counterCount(redis, minuteKey)).toBe(2);
    expect(await counterCount(redis, hourKey)).toBe(2);

    for (const path of ["/api/three", "/api/four"]) {
      const refused = await call(port, path, { key: key.key });
      expect(refused.status).toBe(429);
      // The refusing window is the hour: its limit and its end.
      expect(legacyHeaders(refused)).toMatchObject({
        limit: 2,
        remaining: 0,
        reset: windowEnd(now, HOUR_MS) / 1000,
      });
      expect(legacyHeaders(refused).retryAfter).toBeGreaterThan(60);
      expect(await counterCount(redis, minuteKey), "the minute counter after a refusal").toBe(2);
      expect(await counterCount(redis, hourKey)).toBe(2);
    }
    expect(upstream.requests.length - forwardedBefore).toBe(2);
  }, 100_000);
});

/** Parses `"name";k=v;k=v, ...` (the IETF RateLimit-Policy / RateLimit syntax keygate emits). */
function parseItems(value: string | string[] | undefined): Record<string, Record<string, number>> {
  expect(typeof value).toBe("string");
  const out: Record<string, Record<string, number>> = {};
  for (const item of (value as string).split(", ")) {
    const [name, ...params] = item.split(";");
    const fields: Record<string, number> = {};
    for (const param of params) {
      const [k, v] = param.split("=");
      fields[k!] = Number(v);
    }
    out[JSON.parse(name!) as string] = fields;
  }
  return out;
}

describe("headers agree with the store", () => {
  it("X-RateLimit-* and the IETF fields match Redis counters and Redis TIME, 429 included", async () => {
    const MINUTE = 5;
    const HOUR = 20;
    const { namespace, instances } = await gateways(
      (url) => `
rate_limit: { headers: { ietf: true } }
plans:
  metered:
    limits: [{ name: api, windows: { minute: ${MINUTE}, hour: ${HOUR} } }]
routes:
${apiRoute(url)}`,
    );
    const gateway = instances[0]!;
    const port = gateway.addresses.proxy.port;
    const key = await createKey(gateway.adminUrl, { label: "Headers", plan: "metered" });
    const minuteKey = counterKey(namespace, key.id, "api", "minute", MINUTE);
    const hourKey = counterKey(namespace, key.id, "api", "hour", HOUR);
    await awaitWindowRoom(redis, HOUR_MS, 5_000);
    await awaitWindowRoom(redis, MINUTE_MS, 5_000);

    const expectIetf = (answer: Answer, minuteCount: number, hourCount: number, now: number) => {
      expect(answer.headers["ratelimit-policy"]).toBe(
        `"api.minute";q=${MINUTE};w=60, "api.hour";q=${HOUR};w=3600`,
      );
      const state = parseItems(answer.headers.ratelimit);
      expect(Object.keys(state)).toEqual(["api.minute", "api.hour"]);
      expect(state["api.minute"]!.r).toBe(MINUTE - minuteCount);
      expect(state["api.hour"]!.r).toBe(HOUR - hourCount);
      const minuteLeft = (windowEnd(now, MINUTE_MS) - now) / 1000;
      const hourLeft = (windowEnd(now, HOUR_MS) - now) / 1000;
      expect(Math.abs(state["api.minute"]!.t! - minuteLeft)).toBeLessThanOrEqual(1);
      expect(Math.abs(state["api.hour"]!.t! - hourLeft)).toBeLessThanOrEqual(1);
    };

    for (let k = 1; k <= MINUTE; k++) {
      const answer = await call(port, `/api/${k}`, { key: key.key });
      const now = await redisNow(redis);
      expect(answer.status).toBe(200);
      const c = await counterCount(redis, minuteKey);
      const hourCount = await counterCount(redis, hourKey);
      expect(c).toBe(k);
      expect(hourCount).toBe(k);
      const h = legacyHeaders(answer);
      // The minute window has the fewest requests left, so it is the one shown.
      expect(h).toEqual({
        limit: MINUTE,
        remaining: MINUTE - c,
        reset: windowEnd(now, MINUTE_MS) / 1000,
        retryAfter: undefined,
      });
      expectIetf(answer, c, hourCount, now);
    }

    const refused = await call(port, "/api/over", { key: key.key });
    const now = await redisNow(redis);
    expect(refused.status).toBe(429);
    const h = legacyHeaders(refused);
    expect(h).toMatchObject({ limit: MINUTE, remaining: 0, reset: windowEnd(now, MINUTE_MS) / 1000 });
    expect(Math.abs(h.retryAfter! - (h.reset! * 1000 - now) / 1000)).toBeLessThanOrEqual(1);
    expect(refused.text).toBe(rateLimitedBody(h.retryAfter!));
    // Nothing was counted for the refused request, in either window.
    expect(await counterCount(redis, minuteKey)).toBe(MINUTE);
    expect(await counterCount(redis, hourKey)).toBe(MINUTE);
    expectIetf(refused, MINUTE, MINUTE, now);
  });
});

describe("SCRIPT FLUSH", () => {
  it("costs no request: the limiter re-sends its script and the counter continues", async () => {
    const LIMIT = 100;
    const { namespace, instances } = await gateways(
      (url) => `
plans:
  flushed:
    limits: [{ name: api, windows: { minute: ${LIMIT} } }]
routes:
${apiRoute(url)}`,
    );
    const gateway = instances[0]!;
    const port = gateway.addresses.proxy.port;
    const key = await createKey(gateway.adminUrl, { label: "Flush", plan: "flushed" });
    const counter = counterKey(namespace, key.id, "api", "minute", LIMIT);
    await awaitWindowRoom(redis, MINUTE_MS, 5_000);
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const noscript = async () => {
      const info = await redis.info("errorstats");
      return Number(/errorstat_NOSCRIPT:count=(\d+)/.exec(info)?.[1] ?? 0);
    };
    try {
      const first = await call(port, "/api/before", { key: key.key, agent });
      expect(first.status).toBe(200);
      expect(legacyHeaders(first).remaining).toBe(LIMIT - 1);

      const noscriptBefore = await noscript();
      expect(await redis.script("FLUSH")).toBe("OK");
      const second = await call(port, "/api/after", { key: key.key, agent });
      expect(second.status, second.text).toBe(200);
      expect(legacyHeaders(second).remaining).toBe(LIMIT - 2);
      expect(await counterCount(redis, counter)).toBe(2);
      // The flush really hit the limiter: its EVALSHA was answered NOSCRIPT once, then re-sent.
      expect(await noscript()).toBeGreaterThan(noscriptBefore);

      // Again, with concurrent requests racing the reload of the script.
      expect(await redis.script("FLUSH")).toBe("OK");
      const burst = await Promise.all(
        Array.from({ length: 10 }, (_, i) => call(port, `/api/burst/${i}`, { key: key.key, agent })),
      );
      expect(burst.map((a) => a.status)).toEqual(Array(10).fill(200));
      expect(
        burst.map((a) => legacyHeaders(a).remaining).sort((x, y) => x! - y!),
        "ten distinct counts",
      ).toEqual(Array.from({ length: 10 }, (_, i) => LIMIT - 12 + i));
      expect(await counterCount(redis, counter)).toBe(12);
    } finally {
      agent.destroy();
    }
  });
});

describe("plans", () => {
  it("a plan limited to route a gets 403 INSUFFICIENT_PERMISSIONS on route b", async () => {
    const { instances } = await gateways(
      (url) => `
plans:
  narrow:
    routes: [a]
    limits: [{ name: api, windows: { minute: 100 } }]
routes:
${apiRoute(url, "a", "/a")}${apiRoute(url, "b", "/b")}`,
    );
    const gateway = instances[0]!;
    const port = gateway.addresses.proxy.port;
    const key = await createKey(gateway.adminUrl, { label: "Narrow", plan: "narrow" });

    expect((await call(port, "/a/items", { key: key.key })).status).toBe(200);
    const forwardedBefore = upstream.requests.length;
    const refused = await call(port, "/b/items", { key: key.key });
    expect(refused.status).toBe(403);
    expect(refused.text).toBe(
      JSON.stringify({
        error: { code: "INSUFFICIENT_PERMISSIONS", message: "Insufficient permissions for this operation" },
      }),
    );
    // Refused before rate limiting: no rate-limit headers, nothing forwarded.
    expect(refused.headers["x-ratelimit-limit"]).toBeUndefined();
    expect(upstream.requests.length).toBe(forwardedBefore);
  });

  it("a key created with its own limits through the admin API gets them; other keys keep the plan's", async () => {
    await awaitWindowRoom(redis, MINUTE_MS, 5_000);
    const { namespace, instances } = await gateways(
      (url) => `
plans:
  pro:
    limits: [{ name: api, windows: { minute: 5 } }]
routes:
${apiRoute(url)}`,
    );
    const gateway = instances[0]!;
    const port = gateway.addresses.proxy.port;
    const own = await createKeyWithLimits(gateway.adminUrl, {
      label: "Own limits",
      plan: "pro",
      limits: { api: { minute: 2 } },
    });
    expect(own.limits).toEqual({ api: { minute: 2 } });
    const plain = await createKey(gateway.adminUrl, { label: "Plan limits", plan: "pro" });

    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await call(port, "/api/own", { key: own.key }));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429]);
    expect(answers.map((a) => legacyHeaders(a).limit)).toEqual([2, 2, 2]);
    expect(answers.map((a) => legacyHeaders(a).remaining)).toEqual([1, 0, 0]);
    // The key's limit is part of its counter's name.
    expect(await counterCount(redis, counterKey(namespace, own.id, "api", "minute", 2))).toBe(2);
    expect(await redis.exists(counterKey(namespace, own.id, "api", "minute", 5))).toBe(0);

    const other = await call(port, "/api/plain", { key: plain.key });
    expect(other.status).toBe(200);
    expect(legacyHeaders(other)).toMatchObject({ limit: 5, remaining: 4 });
  });
});

describe("shadow rules", () => {
  it("never refuse, report remaining 0 and count shadow_exceeded", async () => {
    await awaitWindowRoom(redis, MINUTE_MS, 5_000);
    const { namespace, instances } = await gateways(
      (url) => `
plans:
  trial:
    limits: [{ name: trial, windows: { minute: 2 }, shadow: true }]
routes:
${apiRoute(url)}`,
    );
    const gateway = instances[0]!;
    const port = gateway.addresses.proxy.port;
    const key = await createKey(gateway.adminUrl, { label: "Shadow", plan: "trial" });
    const shadowExceeded = async () =>
      metricValue(await metricsText(gateway.adminUrl), "keygate_ratelimit_decisions_total", {
        route: "api",
        result: "shadow_exceeded",
      });
    const forwardedBefore = upstream.requests.length;

    const first = await call(port, "/api/1", { key: key.key });
    const second = await call(port, "/api/2", { key: key.key });
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(legacyHeaders(second)).toMatchObject({ limit: 2, remaining: 0 });
    expect(await shadowExceeded()).toBe(0);

    const third = await call(port, "/api/3", { key: key.key });
    expect(third.status).toBe(200);
    expect(legacyHeaders(third)).toMatchObject({ limit: 2, remaining: 0, retryAfter: undefined });
    expect(await shadowExceeded()).toBe(1);

    const fourth = await call(port, "/api/4", { key: key.key });
    expect(fourth.status).toBe(200);
    expect(await shadowExceeded()).toBe(2);
    expect(upstream.requests.length - forwardedBefore).toBe(4);
    // A shadow window counts only while it has room.
    expect(await counterCount(redis, counterKey(namespace, key.id, "trial", "minute", 2))).toBe(2);
    const metrics = await metricsText(gateway.adminUrl);
    expect(
      metricValue(metrics, "keygate_ratelimit_decisions_total", { route: "api", result: "rejected" }),
    ).toBe(0);
    expect(
      metricValue(metrics, "keygate_ratelimit_decisions_total", { route: "api", result: "allowed" }),
    ).toBe(4);
  });
});
