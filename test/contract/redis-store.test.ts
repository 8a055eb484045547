/**
 * What only the Redis store promises: the documented data model, no full key anywhere in Redis,
 * namespaces that keep instances apart, failing fast (never hanging) while Redis is down and
 * recovering on its own, and the lookup cache working against it.
 */
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it, vi } from "vitest";
import { KeyLookup } from "../../src/keys/lookup.js";
import type { KeyEvent, KeyRecord } from "../../src/keys/record.js";
import { CircuitBreaker } from "../../src/store/breaker.js";
import type { KeyStore } from "../../src/store/key-store.js";
import { StoreUnavailableError } from "../../src/store/key-store.js";
import { RedisKeyStore } from "../../src/store/redis.js";
import { type DedicatedRedisHandle, startDedicatedRedis, uniqueNamespace } from "../helpers/redis.js";
import {
  DAY,
  dropNamespace,
  eventually,
  FULL_KEY_PATTERN,
  inspector,
  issue,
  keysOf,
  makeRecord,
  openRedisStore,
  redisStoreOptions,
  sleep,
  T0,
  timed,
} from "./fixtures.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function opened(url = inject("redisUrl")) {
  const handle = openRedisStore(url);
  cleanups.push(handle.cleanup);
  return handle;
}

let redis: Redis;
beforeAll(() => {
  redis = inspector(inject("redisUrl"));
});
afterAll(() => {
  redis.disconnect();
});

/** Every string Redis holds under a namespace: key names, hash fields and values, members. */
async function everything(namespace: string): Promise<string[]> {
  const out: string[] = [];
  for (const key of await keysOf(redis, namespace)) {
    out.push(key);
    const type = await redis.type(key);
    if (type === "hash") out.push(...Object.entries(await redis.hgetall(key)).flat());
    else if (type === "zset") out.push(...(await redis.zrange(key, 0, -1)));
    else if (type === "string") out.push((await redis.get(key)) ?? "");
    else if (type === "set") out.push(...(await redis.smembers(key)));
    else if (type === "list") out.push(...(await redis.lrange(key, 0, -1)));
    else throw new Error(`unexpected type ${type} of ${key}`);
  }
  return out;
}

describe("redis store: data model", () => {
  it("writes the documented keys and fields", async () => {
    const { store, namespace: ns } = opened();
    const record = makeRecord({
      label: "Mobile",
      plan: "pro",
      createdAt: T0,
      expiresAt: T0 + DAY,
      metadata: { team: "video" },
      rotatedTo: "key_000000000000000000000009",
    });
    const minimal = makeRecord({ createdAt: T0 + 1 });
    expect(await store.create(record)).toBe(true);
    expect(await store.create(minimal)).toBe(true);

    expect(await keysOf(redis, ns)).toEqual(
      [`${ns}created`, `${ns}ids`, `${ns}key:${record.hash}`, `${ns}key:${minimal.hash}`].sort(),
    );
    expect(await redis.type(`${ns}key:${record.hash}`)).toBe("hash");
    expect(await redis.hgetall(`${ns}key:${record.hash}`)).toEqual({
      id: record.id,
      prefix: record.prefix,
      label: "Mobile",
      plan: "pro",
      status: "active",
      created_at: String(T0),
      expires_at: String(T0 + DAY),
      metadata: JSON.stringify({ team: "video" }),
      rotated_to: "key_000000000000000000000009",
    });
    // Absent optional fields are absent, not empty strings.
    expect(await redis.hgetall(`${ns}key:${minimal.hash}`)).toEqual({
      id: minimal.id,
      prefix: minimal.prefix,
      label: minimal.label,
      plan: "free",
      status: "active",
      created_at: String(T0 + 1),
    });
    expect(await redis.type(`${ns}ids`)).toBe("hash");
    expect(await redis.hgetall(`${ns}ids`)).toEqual({ [record.id]: record.hash, [minimal.id]: minimal.hash });
    expect(await redis.type(`${ns}created`)).toBe("zset");
    expect(await redis.zrange(`${ns}created`, 0, -1, "WITHSCORES")).toEqual([
      `${String(T0).padStart(15, "0")}:${record.id}`,
      "0",
      `${String(T0 + 1).padStart(15, "0")}:${minimal.id}`,
      "0",
    ]);

    await store.touch([{ id: record.id, hash: record.hash, lastUsedAt: T0 + 5, count: 3 }]);
    expect(await redis.hget(`${ns}key:${record.hash}`, "last_used_at")).toBe(String(T0 + 5));
    expect(await redis.type(`${ns}usage:${record.id}`)).toBe("hash");
    expect(await redis.hgetall(`${ns}usage:${record.id}`)).toEqual({ "2025-01-10": "3" });
    const ttl = await redis.ttl(`${ns}usage:${record.id}`);
    expect(ttl).toBeGreaterThan(399 * 86_400);
    expect(ttl).toBeLessThanOrEqual(400 * 86_400);

    // Removing optional fields removes them from the hash.
    await store.update(record.id, { expiresAt: undefined, metadata: undefined, rotatedTo: undefined });
    expect(Object.keys(await redis.hgetall(`${ns}key:${record.hash}`)).sort()).toEqual(
      ["created_at", "id", "label", "last_used_at", "plan", "prefix", "status"].sort(),
    );

    // Deleting removes the record, its usage and its index entries: nothing is left.
    await store.delete(record.id);
    await store.delete(minimal.id);
    expect(await keysOf(redis, ns)).toEqual([]);
  });

  it("writes nothing for a touch of an unknown or deleted key", async () => {
    const { store, namespace: ns } = opened();
    const gone = makeRecord();
    await store.create(gone);
    await store.delete(gone.id);
    const unknown = makeRecord();
    await store.touch([
      { id: unknown.id, hash: unknown.hash, lastUsedAt: T0, count: 1 },
      { id: gone.id, hash: gone.hash, lastUsedAt: T0, count: 1 },
    ]);
    expect(await keysOf(redis, ns)).toEqual([]);
  });

  it("never stores a full key, in any key name or value", async () => {
    const { store, namespace: ns } = opened();
    const issued = Array.from({ length: 10 }, (_, i) => issue({ metadata: { n: String(i) } }));
    for (const { record } of issued) expect(await store.create(record)).toBe(true);
    await store.touch(
      issued.map(({ record }) => ({ id: record.id, hash: record.hash, lastUsedAt: T0, count: 2 })),
    );
    await store.update(issued[0]?.record.id as string, { status: "revoked", label: "revoked one" });
    await store.delete(issued[1]?.record.id as string);

    const strings = await everything(ns);
    expect(strings.length).toBeGreaterThan(50);
    for (const s of strings) {
      expect(s).not.toMatch(FULL_KEY_PATTERN);
      for (const { key } of issued) expect(s).not.toContain(key);
    }
  });

  it("keeps namespaces apart: records and events", async () => {
    const a = opened();
    const b = opened();
    const record = makeRecord();
    await a.store.create(record);
    expect(await b.store.getByHash(record.hash)).toBeUndefined();
    expect(await b.store.getById(record.id)).toBeUndefined();
    expect((await b.store.list({}, 10)).items).toEqual([]);
    // The same record can exist in both.
    expect(await b.store.create(record)).toBe(true);

    const inA: KeyEvent[] = [];
    const inB: KeyEvent[] = [];
    await a.store.subscribe(
      (e) => inA.push(e),
      () => {},
    );
    await b.store.subscribe(
      (e) => inB.push(e),
      () => {},
    );
    const event: KeyEvent = { type: "revoked", id: record.id, hash: record.hash };
    await a.store.publish(event);
    await vi.waitFor(() => expect(inA).toEqual([event]), { timeout: 5_000 });
    await sleep(100);
    expect(inB).toEqual([]);
  });

  it("drops every subscription on close", async () => {
    const { store, namespace: ns, peer } = opened();
    const seen: KeyEvent[] = [];
    await store.subscribe(
      (e) => seen.push(e),
      () => {},
    );
    await store.subscribe(
      (e) => seen.push(e),
      () => {},
    );
    expect(await redis.pubsub("NUMSUB", `${ns}events`)).toEqual([`${ns}events`, 2]);
    await store.close();
    await peer().publish({ type: "deleted", id: "key_1", hash: makeRecord().hash });
    await eventually(
      async () => expect(await redis.pubsub("NUMSUB", `${ns}events`)).toEqual([`${ns}events`, 0]),
      3_000,
    );
    expect(seen).toEqual([]);
  });

  it("answers calls made right after construction (waits for the first connection)", async () => {
    const ns = uniqueNamespace("keygate-contract");
    const store = new RedisKeyStore(redisStoreOptions(inject("redisUrl"), ns));
    cleanups.push(async () => {
      await store.close();
      await dropNamespace(redis, ns);
    });
    const record = makeRecord();
    expect(await store.create(record)).toBe(true);
    expect(await store.getById(record.id)).toEqual(record);
  });
});

describe("redis store: outage", () => {
  let server: DedicatedRedisHandle;

  beforeAll(async () => {
    server = await startDedicatedRedis();
  });

  afterAll(async () => {
    await server?.stop();
  });

  /** Every store call, run once each; `seeded` is a record created before the outage. */
  function calls(store: KeyStore, seeded: KeyRecord): [string, () => Promise<unknown>][] {
    const fresh = makeRecord();
    return [
      ["getByHash", () => store.getByHash(seeded.hash)],
      ["getById", () => store.getById(seeded.id)],
      ["create", () => store.create(fresh)],
      ["update", () => store.update(seeded.id, { label: "during outage" })],
      ["delete", () => store.delete(fresh.id)],
      ["list", () => store.list({}, 10)],
      ["list filtered", () => store.list({ plan: "pro" }, 1)],
      ["touch", () => store.touch([{ id: seeded.id, hash: seeded.hash, lastUsedAt: T0, count: 1 }])],
      ["usage", () => store.usage(seeded.id, 30, T0)],
      ["publish", () => store.publish({ type: "revoked", id: seeded.id, hash: seeded.hash })],
    ];
  }

  it.each([
    ["without a circuit breaker", () => undefined],
    ["with a circuit breaker", () => new CircuitBreaker({ failures: 2, cooldownMs: 200 })],
  ])(
    "fails every call fast with StoreUnavailableError while Redis is down, then recovers (%s)",
    async (_, breaker) => {
      const store = new RedisKeyStore({ ...redisStoreOptions(server.url), breaker: breaker() });
      cleanups.push(() => store.close());
      const seeded = makeRecord();
      expect(await store.create(seeded)).toBe(true);
      const events: KeyEvent[] = [];
      const gaps = vi.fn();
      await store.subscribe((e) => events.push(e), gaps);

      await server.pause();
      try {
        // Twice: right after the connection dropped, and once ioredis is in its reconnect backoff.
        for (const round of [1, 2]) {
          if (round === 2) await sleep(1_500);
          for (const [name, call] of calls(store, seeded)) {
            const outcome = await timed(call);
            expect.soft(outcome.settled, `${name} (round ${round}) must reject`).toBe("rejected");
            expect.soft(outcome.error, `${name} (round ${round})`).toBeInstanceOf(StoreUnavailableError);
            expect.soft(outcome.ms, `${name} (round ${round}) took ${outcome.ms} ms`).toBeLessThan(2_000);
          }
          const ping = await timed(() => store.ping());
          expect(ping.value).toBe(false);
          expect(ping.ms).toBeLessThan(2_000);
        }
      } finally {
        await server.resume();
      }

      // ioredis reconnects with a backoff: poll. The restarted server keeps nothing on disk, so it
      // comes back empty: what matters here is that the same store instance works again.
      await eventually(async () => expect(await store.getByHash(seeded.hash)).toBeUndefined(), 10_000);
      expect(await store.ping()).toBe(true);
      const after = makeRecord();
      expect(await store.create(after)).toBe(true);
      expect(await store.update(after.id, { plan: "pro" })).toEqual({ ...after, plan: "pro" });
      expect((await store.list({}, 10)).items).toEqual([{ ...after, plan: "pro" }]);
      await store.touch([{ id: after.id, hash: after.hash, lastUsedAt: T0, count: 4 }]);
      expect(await store.usage(after.id, 1, T0)).toEqual([{ date: "2025-01-10", requests: 4 }]);
      expect(await store.delete(after.id)).toBeDefined();

      // The subscription came back on its own and said events may have been missed.
      await vi.waitFor(() => expect(gaps).toHaveBeenCalled(), { timeout: 10_000 });
      const event: KeyEvent = { type: "deleted", id: after.id, hash: after.hash };
      await eventually(
        async () => {
          await store.publish(event);
          expect(events).toContainEqual(event);
        },
        10_000,
        200,
      );
    },
  );

  it("does not hang in subscribe or close while Redis is down", async () => {
    const store = new RedisKeyStore(redisStoreOptions(server.url));
    cleanups.push(() => store.close());
    expect(await store.ping()).toBe(true);
    await server.pause();
    try {
      const events: KeyEvent[] = [];
      const subscribed = await timed(() =>
        store.subscribe(
          (e) => events.push(e),
          () => {},
        ),
      );
      expect(subscribed.ms).toBeLessThan(2_000);
      if (subscribed.settled === "rejected") expect(subscribed.error).toBeInstanceOf(StoreUnavailableError);
      const closed = await timed(() => store.close());
      expect(closed.settled).toBe("resolved");
      expect(closed.ms).toBeLessThan(2_000);
    } finally {
      await server.resume();
    }
  });

  it("a subscription made while Redis is down starts delivering once it is back", async () => {
    const store = new RedisKeyStore(redisStoreOptions(server.url));
    cleanups.push(() => store.close());
    expect(await store.ping()).toBe(true);
    await server.pause();
    const events: KeyEvent[] = [];
    const gaps = vi.fn();
    let subscribed: Awaited<ReturnType<typeof timed>>;
    try {
      subscribed = await timed(() => store.subscribe((e) => events.push(e), gaps));
      expect(subscribed.ms).toBeLessThan(2_000);
    } finally {
      await server.resume();
    }
    if (subscribed.settled === "rejected") return; // refusing is allowed too; then there is nothing to deliver
    const event: KeyEvent = { type: "revoked", id: "key_1", hash: makeRecord().hash };
    await eventually(
      async () => {
        await store.publish(event);
        expect(events).toContainEqual(event);
      },
      10_000,
      200,
    );
    // Whatever was published before the subscription took effect is lost: callers must be told.
    expect(gaps).toHaveBeenCalled();
  });

  it("a store opened while Redis is down fails fast, then works once Redis is back", async () => {
    await server.pause();
    const store = new RedisKeyStore(redisStoreOptions(server.url));
    cleanups.push(() => store.close());
    try {
      const outcome = await timed(() => store.getByHash(makeRecord().hash));
      expect(outcome.error).toBeInstanceOf(StoreUnavailableError);
      expect(outcome.ms).toBeLessThan(2_000);
      const ping = await timed(() => store.ping());
      expect(ping.value).toBe(false);
      expect(ping.ms).toBeLessThan(2_000);
    } finally {
      await server.resume();
    }
    await eventually(async () => expect(await store.ping()).toBe(true), 10_000);
    const record = makeRecord();
    expect(await store.create(record)).toBe(true);
  });
});

describe("KeyLookup over the Redis store", () => {
  type Counted = KeyStore & { calls: Record<string, number> };

  /** Counts every method call that reaches the store. */
  function counting(store: KeyStore): Counted {
    const calls: Record<string, number> = {};
    return new Proxy(store, {
      get(target, property, receiver) {
        if (property === "calls") return calls;
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          calls[String(property)] = (calls[String(property)] ?? 0) + 1;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as Counted;
  }

  let store: Counted;
  let peer: RedisKeyStore;
  let lookup: KeyLookup;

  beforeEach(async () => {
    const handle = opened();
    store = counting(handle.store);
    peer = handle.peer();
    lookup = new KeyLookup(store, { size: 100, ttlMs: 60_000, negativeTtlMs: 60_000 });
    await lookup.start();
    cleanups.push(() => lookup.stop());
  });

  it("answers a cached key without calling the store", async () => {
    const record = makeRecord();
    await peer.create(record);
    expect(await lookup.find(record.hash)).toEqual(record);
    expect(store.calls.getByHash).toBe(1);
    for (let i = 0; i < 5; i++) {
      const hit = lookup.find(record.hash);
      expect(hit).not.toBeInstanceOf(Promise); // synchronous on a hit
      expect(hit).toEqual(record);
    }
    expect(store.calls.getByHash).toBe(1);
  });

  it("remembers an unknown hash (negative cache)", async () => {
    const unknown = makeRecord();
    expect(await lookup.find(unknown.hash)).toBeUndefined();
    expect(lookup.find(unknown.hash)).toBeUndefined();
    expect(store.calls.getByHash).toBe(1);
  });

  it("coalesces concurrent lookups of one hash into one store call", async () => {
    const record = makeRecord();
    await peer.create(record);
    const results = await Promise.all(Array.from({ length: 20 }, () => lookup.find(record.hash)));
    expect(results).toEqual(Array.from({ length: 20 }, () => record));
    expect(store.calls.getByHash).toBe(1);
  });

  it("asks the store again after invalidate()", async () => {
    const record = makeRecord();
    await peer.create(record);
    await lookup.find(record.hash);
    await peer.update(record.id, { status: "revoked" });
    lookup.invalidate(record.hash);
    expect(await lookup.find(record.hash)).toEqual({ ...record, status: "revoked" });
    expect(store.calls.getByHash).toBe(2);
  });

  it("drops a key when another instance publishes its revocation", async () => {
    const record = makeRecord();
    await peer.create(record);
    expect(await lookup.find(record.hash)).toEqual(record);
    await peer.update(record.id, { status: "revoked" });
    await peer.publish({ type: "revoked", id: record.id, hash: record.hash });
    await vi.waitFor(async () => expect((await lookup.find(record.hash))?.status).toBe("revoked"), {
      timeout: 5_000,
    });
  });

  it("drops a negative entry when another instance publishes an import", async () => {
    const record = makeRecord();
    expect(await lookup.find(record.hash)).toBeUndefined();
    await peer.create(record);
    await peer.publish({ type: "updated", id: "", hash: record.hash });
    await vi.waitFor(async () => expect(await lookup.find(record.hash)).toEqual(record), { timeout: 5_000 });
  });
});
