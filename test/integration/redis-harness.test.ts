import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import { type DedicatedRedisHandle, startDedicatedRedis, uniqueNamespace } from "../helpers/redis.js";

/** Fails fast while the server is down instead of queueing, and reconnects on its own. */
function connect(url: string): Redis {
  return new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
    retryStrategy: () => 50,
  });
}

const clients: Redis[] = [];
function client(url: string): Redis {
  const c = connect(url);
  c.on("error", () => {}); // connection errors are expected during the outage test
  clients.push(c);
  return c;
}

afterAll(() => {
  for (const c of clients) c.disconnect();
});

async function until<T>(what: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await what();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe("shared Redis from globalSetup", () => {
  it("answers PING, SET and GET", async () => {
    const url = inject("redisUrl");
    expect(url).toMatch(/^rediss?:\/\//);
    expect(url).not.toMatch(/:6379(\/|$)/);
    const redis = client(url);
    await redis.connect();
    expect(await redis.ping()).toBe("PONG");
    const ns = uniqueNamespace();
    expect(ns).toMatch(/^test:[0-9a-f]{12}:$/);
    await redis.set(`${ns}k`, "v", "EX", 60);
    expect(await redis.get(`${ns}k`)).toBe("v");
    await redis.del(`${ns}k`);
  });

  it("gives a different namespace each time", () => {
    expect(uniqueNamespace("kg")).toMatch(/^kg:[0-9a-f]{12}:$/);
    expect(uniqueNamespace()).not.toBe(uniqueNamespace());
  });
});

describe("dedicated Redis", () => {
  let redis: DedicatedRedisHandle | undefined;
  afterEach(async () => {
    await redis?.stop();
    redis = undefined;
  });

  it("pauses (commands fail) and resumes on the same port (commands work again)", async () => {
    redis = await startDedicatedRedis();
    expect(["process", "container"]).toContain(redis.kind);
    expect(redis.url).toBe(`redis://${redis.host}:${redis.port}`);
    const c = client(redis.url);
    await c.connect();
    await c.set("k", "before");
    expect(await c.get("k")).toBe("before");

    await redis.pause();
    await expect(c.ping()).rejects.toThrow();

    await redis.resume();
    expect(await until(() => c.ping())).toBe("PONG");
    expect(await c.get("k")).toBeNull(); // nothing is kept across a stop
    await c.set("k", "after");

    await redis.restart();
    expect(await until(() => c.get("k"))).toBeNull();
  });

  it("stop is final and idempotent", async () => {
    const r = await startDedicatedRedis();
    await r.stop();
    await r.stop();
    await expect(r.resume()).rejects.toThrow(/stopped for good/);
  });
});
