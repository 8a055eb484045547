/**
 * The Redis limiter sends the requests of one event-loop turn in one script
 * call. Each request must still get its own exact decision, in arrival order,
 * as if it had been sent alone: proved here on a real Redis, with MONITOR
 * counting the script calls.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Decision, WindowCheck } from "../../src/ratelimit/limit-store.js";
import { RedisLimitStore } from "../../src/ratelimit/redis.js";
import { CircuitBreaker } from "../../src/store/breaker.js";
import { awaitWindowRoom, connectRedis, dropNamespace, HOUR_MS, MINUTE_MS } from "../helpers/ratelimit.js";
import { type NamespaceWatch, uniqueNamespace, watchNamespace } from "../helpers/redis.js";

let url: string;
let namespace: string;
let client: Redis;
let watch: NamespaceWatch;
let limiter: RedisLimitStore;

beforeAll(async () => {
  url = inject("redisUrl");
  namespace = uniqueNamespace("batch");
  client = await connectRedis(url);
  watch = await watchNamespace(url, namespace);
  limiter = new RedisLimitStore(client, new CircuitBreaker({ failures: 5, cooldownMs: 1_000 }));
});

afterAll(async () => {
  await watch.stop();
  client.disconnect();
  await dropNamespace(url, namespace);
});

const window = (key: string, limit: number, windowMs = MINUTE_MS): WindowCheck => ({
  key: `${namespace}rl:{k:${key}}:api:${windowMs}:${limit}`,
  limit,
  windowMs,
  sliding: false,
  shadow: false,
});

/** Script calls Redis ran for the namespace since the last call of this function. */
async function scriptCalls(): Promise<number> {
  await watch.caughtUp();
  const count = watch.seen.filter(([command]) => /^evalsha$|^eval$/i.test(command ?? "")).length;
  watch.seen.length = 0;
  return count;
}

/** `count` requests with the same checks, all in one turn: their decisions and the script calls made. */
async function consumeTogether(count: number, checks: WindowCheck[]) {
  await scriptCalls();
  const decisions = await Promise.all(Array.from({ length: count }, () => limiter.consume(checks, 1)));
  return { decisions, calls: await scriptCalls() };
}

describe("Redis limiter batching", () => {
  it("decides requests of one turn in one script call, each exactly and in order", async () => {
    await awaitWindowRoom(client, MINUTE_MS, 5_000);
    await scriptCalls();
    const busy = [window("busy", 3)];
    const twoWindows = [window("two", 10), window("two", 2, HOUR_MS)];
    // Issued in the same turn: they share one call.
    const decisions = await Promise.all([
      limiter.consume(busy, 1),
      limiter.consume(twoWindows, 1),
      limiter.consume(busy, 1),
      limiter.consume(twoWindows, 1),
      limiter.consume(busy, 1),
      limiter.consume(twoWindows, 1),
      limiter.consume(busy, 1),
    ]);
    expect(await scriptCalls()).toBe(1);

    const summary = (d: Decision) => [d.allowed, ...d.windows.map((w) => [w.remaining, w.exceeded])];
    expect(decisions.map(summary)).toEqual([
      [true, [2, false]],
      [true, [9, false], [1, false]],
      [true, [1, false]],
      [true, [8, false], [0, false]],
      [true, [0, false]],
      // The hour window is full: all-or-nothing, so the minute window is not counted either.
      [false, [8, false], [0, true]],
      [false, [0, true]],
    ]);
    const now = decisions[0]!.now;
    expect(decisions.every((d) => d.now === now)).toBe(true);
    expect(decisions[6]!.windows[0]!.retryAt).toBe(now - (now % MINUTE_MS) + MINUTE_MS);
    expect(Number(await client.hget(twoWindows[0]!.key, "c"))).toBe(2);
  });

  it("sends requests of separate turns separately", async () => {
    await awaitWindowRoom(client, MINUTE_MS, 5_000);
    await scriptCalls();
    const single = [window("single", 100)];
    const first = await limiter.consume(single, 1);
    const second = await limiter.consume(single, 1);
    expect([first.windows[0]!.remaining, second.windows[0]!.remaining]).toEqual([99, 98]);
    expect(await scriptCalls()).toBe(2);
  });

  it("splits a large turn into calls of at most 64 requests", async () => {
    await awaitWindowRoom(client, MINUTE_MS, 5_000);
    const { decisions, calls } = await consumeTogether(150, [window("large", 1_000)]);
    expect(calls).toBe(3);
    expect(decisions.map((d) => d.windows[0]!.remaining)).toEqual(
      Array.from({ length: 150 }, (_, i) => 999 - i),
    );
  });

  it("also caps a call at 256 counters, however few requests carry them", async () => {
    await awaitWindowRoom(client, HOUR_MS, 5_000);
    // 40 requests of 8 windows each: 32 of them fill the first call, the other 8 go in a second.
    const eight = Array.from({ length: 8 }, (_, i) => window(`wide${i}`, 1_000, HOUR_MS));
    const { decisions, calls } = await consumeTogether(40, eight);
    expect(calls).toBe(2);
    expect(decisions.map((d) => d.windows.map((w) => w.remaining))).toEqual(
      Array.from({ length: 40 }, (_, i) => Array(8).fill(999 - i)),
    );
  });

  it("starts a new call rather than let one request's counters take a call past 256", async () => {
    await awaitWindowRoom(client, HOUR_MS, 5_000);
    // 100 + 100 counters fit in one call; the third request's 100 would make it 300.
    const hundred = Array.from({ length: 100 }, (_, i) => window(`hundred${i}`, 1_000, HOUR_MS));
    const { decisions, calls } = await consumeTogether(3, hundred);
    expect(calls).toBe(2);
    // Each counted once, in order: every window of the n-th request has 1000 - n left.
    expect(decisions.map((d) => [...new Set(d.windows.map((w) => w.remaining))])).toEqual([
      [999],
      [998],
      [997],
    ]);
  });

  it("fails every request of a call whose reply does not have the expected shape", async () => {
    const odd = await connectRedis(url);
    const shortReplies = new RedisLimitStore(odd, new CircuitBreaker({ failures: 5, cooldownMs: 1_000 }));
    // This client's command runs a script that answers with too few values.
    odd.defineCommand("keygateConsume", { lua: "return { 1, 1 }" });
    try {
      const outcomes = await Promise.allSettled([
        shortReplies.consume([window("odd", 5)], 1),
        shortReplies.consume([window("odd", 5)], 1),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
      expect(String((outcomes[0] as PromiseRejectedResult).reason)).toMatch(
        /unexpected reply to a batch of 2/,
      );
    } finally {
      odd.disconnect();
    }
  });

  it("counts a failed call as one breaker failure, however many requests it carried", async () => {
    const down = await connectRedis(url);
    const breaker = new CircuitBreaker({ failures: 2, cooldownMs: 60_000 });
    const broken = new RedisLimitStore(down, breaker);
    down.disconnect();
    const turn = () =>
      Promise.allSettled(Array.from({ length: 10 }, () => broken.consume([window("trip", 5)], 1)));
    expect((await turn()).every((o) => o.status === "rejected")).toBe(true);
    expect(breaker.current).toBe("closed");
    await turn();
    expect(breaker.current).toBe("open");
  });

  it("fails every request of a call when Redis cannot answer", async () => {
    const down = await connectRedis(url);
    const broken = new RedisLimitStore(down, new CircuitBreaker({ failures: 5, cooldownMs: 1_000 }));
    down.disconnect();
    const outcomes = await Promise.allSettled([
      broken.consume([window("down", 5)], 1),
      broken.consume([window("down", 5)], 1),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(String((outcomes[0] as PromiseRejectedResult).reason)).toMatch(/redis limiter/);
  });
});
