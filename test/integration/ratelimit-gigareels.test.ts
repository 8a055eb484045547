/**
 * The GigaReels example (config/examples/gigareels.yaml) on the Redis store
 * keeps its guide's "Default Limits": 10 POST /api/render per minute per key,
 * then 429 `{"error":"Rate limit exceeded. Try again in N seconds."}` with
 * N = Retry-After; GET /api/render/status/* has its own counter (60/minute).
 *
 * The example runs as shipped, with only the environment variables it reads
 * set, except for its fixed Redis namespace ("gigareels:"), which is replaced
 * by a unique one so runs sharing a Redis never see each other's keys.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { ADMIN_TOKEN, createKey } from "../helpers/keys.js";
import {
  awaitWindowRoom,
  call,
  connectRedis,
  counterCount,
  counterKey,
  dropNamespace,
  legacyHeaders,
  MINUTE_MS,
  redisNow,
} from "../helpers/ratelimit.js";
import { uniqueNamespace } from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

const EXAMPLE = fileURLToPath(new URL("../../config/examples/gigareels.yaml", import.meta.url));

let redisUrl: string;
let redis: Redis;
let upstream: TestUpstream;
let gateway: TestGateway;
let namespace: string;
let dataDir: string;

beforeAll(async () => {
  redisUrl = inject("redisUrl");
  redis = await connectRedis(redisUrl);
  upstream = await startUpstream();
  dataDir = await mkdtemp(join(tmpdir(), "keygate-gigareels-"));
  namespace = uniqueNamespace("gigareels");
  const shipped = await readFile(EXAMPLE, "utf8");
  expect(shipped.split('namespace: "gigareels:"')).toHaveLength(2);
  gateway = await startGateway(shipped.replace('namespace: "gigareels:"', `namespace: "${namespace}"`), {
    logLevel: "warn",
    env: {
      KEYGATE_HOST: "127.0.0.1",
      KEYGATE_PORT: "0",
      KEYGATE_ADMIN_HOST: "127.0.0.1",
      KEYGATE_ADMIN_PORT: "0",
      KEYGATE_STORE: "redis",
      REDIS_URL: redisUrl,
      GIGAREELS_UPSTREAM: upstream.url,
      KEYGATE_ADMIN_TOKEN: ADMIN_TOKEN,
      KEYGATE_DATA_DIR: dataDir,
    },
  });
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  if (namespace) await dropNamespace(redisUrl, namespace);
  redis?.disconnect();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("config/examples/gigareels.yaml on Redis", () => {
  it("runs on the Redis store it was pointed at", () => {
    expect(gateway.gateway.config.store).toMatchObject({
      type: "redis",
      redis: { url: redisUrl, namespace },
    });
  });

  it("forwards 10 POST /api/render in a minute, refuses the 11th; status polling has its own counter", async () => {
    const port = gateway.addresses.proxy.port;
    const key = await createKey(gateway.adminUrl, { label: "Render bot", plan: "standard" });
    expect(key.key).toMatch(/^giga_[A-Za-z0-9]{32}$/);
    await awaitWindowRoom(redis, MINUTE_MS, 5_000);
    const render = () =>
      call(port, "/api/render", {
        method: "POST",
        key: key.key,
        body: JSON.stringify({ type: "educational-brainrot", prompt: "Explain quantum physics" }),
      });

    const forwardedBefore = upstream.requests.length;
    for (let i = 1; i <= 10; i++) {
      const answer = await render();
      expect(answer.status, `render #${i}: ${answer.text}`).toBe(200);
      expect(legacyHeaders(answer)).toMatchObject({ limit: 10, remaining: 10 - i });
    }
    expect(upstream.requests.length - forwardedBefore).toBe(10);
    expect(upstream.requests.slice(-10).every((r) => r.method === "POST" && r.url === "/api/render")).toBe(
      true,
    );

    const refused = await render();
    const now = await redisNow(redis);
    expect(refused.status).toBe(429);
    const h = legacyHeaders(refused);
    expect(h).toMatchObject({ limit: 10, remaining: 0, reset: (now - (now % MINUTE_MS) + MINUTE_MS) / 1000 });
    expect(h.retryAfter).toBeGreaterThanOrEqual(1);
    expect(h.retryAfter).toBeLessThanOrEqual(60);
    expect(refused.text).toBe(`{"error":"Rate limit exceeded. Try again in ${h.retryAfter} seconds."}`);
    expect(upstream.requests.length - forwardedBefore).toBe(10);
    expect(await counterCount(redis, counterKey(namespace, key.id, "render", "minute", 10))).toBe(10);

    // Polling the render's status is counted apart (60 per minute), and still allowed.
    const status = await call(port, "/api/render/status/abc", { key: key.key });
    expect(status.status, status.text).toBe(200);
    expect(legacyHeaders(status)).toMatchObject({ limit: 60, remaining: 59 });
    expect(upstream.requests[upstream.requests.length - 1]).toMatchObject({
      method: "GET",
      url: "/api/render/status/abc",
    });
    expect(await counterCount(redis, counterKey(namespace, key.id, "render-status", "minute", 60))).toBe(1);
    // ... and it did not touch the render counter.
    expect(await counterCount(redis, counterKey(namespace, key.id, "render", "minute", 10))).toBe(10);
  });
});
