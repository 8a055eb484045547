/**
 * KeyLookup against a fake store whose calls the test controls: cache hits cost no store call,
 * unknown hashes are remembered briefly, concurrent misses share one call, and an invalidation
 * that races a fill wins (the fill is answered but not cached).
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it, vi } from "vitest";
import { KeyLookup } from "../../src/keys/lookup.js";
import type { KeyEvent, KeyRecord } from "../../src/keys/record.js";
import type { KeyStore } from "../../src/store/key-store.js";
import { StoreUnavailableError } from "../../src/store/key-store.js";

function record(overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id: `key_${randomBytes(12).toString("hex")}`,
    hash: randomBytes(32).toString("hex"),
    prefix: "rp_0123456",
    label: "test",
    plan: "free",
    status: "active",
    createdAt: 1,
    lastUsedAt: undefined,
    expiresAt: undefined,
    metadata: undefined,
    rotatedTo: undefined,
    ...overrides,
  };
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A store with records in a map; getByHash counts calls and can be held back. */
class FakeStore {
  readonly records = new Map<string, KeyRecord>();
  readonly getByHash = vi.fn(async (hash: string) => {
    const gate = this.gates.shift();
    if (gate) await gate.promise;
    return this.records.get(hash);
  });
  /** Each gate holds back one getByHash call until resolved. */
  readonly gates: Deferred<void>[] = [];
  listener: ((event: KeyEvent) => void) | undefined;
  onGap: (() => void) | undefined;
  readonly unsubscribe = vi.fn(async () => {
    this.listener = undefined;
  });
  readonly subscribe = vi.fn(async (listener: (event: KeyEvent) => void, onGap: () => void) => {
    this.listener = listener;
    this.onGap = onGap;
    return this.unsubscribe;
  });

  add(r: KeyRecord): KeyRecord {
    this.records.set(r.hash, r);
    return r;
  }

  hold(): Deferred<void> {
    const gate = deferred<void>();
    this.gates.push(gate);
    return gate;
  }

  asStore(): KeyStore {
    return this as unknown as KeyStore;
  }
}

function setup(options: Partial<{ size: number; ttlMs: number; negativeTtlMs: number }> = {}) {
  const fake = new FakeStore();
  const lookup = new KeyLookup(fake.asStore(), {
    size: 100,
    ttlMs: 60_000,
    negativeTtlMs: 60_000,
    ...options,
  });
  return { fake, lookup };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("KeyLookup", () => {
  it("answers a cache hit synchronously, without a store call", async () => {
    const { fake, lookup } = setup();
    const r = fake.add(record());
    const first = lookup.find(r.hash);
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toEqual(r);
    for (let i = 0; i < 10; i++) expect(lookup.find(r.hash)).toBe(r);
    expect(fake.getByHash).toHaveBeenCalledTimes(1);
  });

  it("remembers unknown hashes for negativeTtlMs only", async () => {
    const { fake, lookup } = setup({ negativeTtlMs: 40 });
    const r = record();
    expect(await lookup.find(r.hash)).toBeUndefined();
    expect(lookup.find(r.hash)).toBeUndefined(); // synchronous: cached as unknown
    expect(fake.getByHash).toHaveBeenCalledTimes(1);
    fake.add(r);
    await sleep(80);
    expect(await lookup.find(r.hash)).toEqual(r);
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("keeps a known record for ttlMs", async () => {
    const { fake, lookup } = setup({ ttlMs: 40 });
    const r = fake.add(record());
    await lookup.find(r.hash);
    const revoked = fake.add({ ...r, status: "revoked" });
    expect(lookup.find(r.hash)).toEqual(r);
    await sleep(80);
    expect(await lookup.find(r.hash)).toEqual(revoked);
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("coalesces concurrent lookups of one hash into one store call", async () => {
    const { fake, lookup } = setup();
    const r = fake.add(record());
    const gate = fake.hold();
    const lookups = Array.from({ length: 25 }, () => lookup.find(r.hash));
    expect(fake.getByHash).toHaveBeenCalledTimes(1);
    gate.resolve();
    expect(await Promise.all(lookups)).toEqual(lookups.map(() => r));
    expect(fake.getByHash).toHaveBeenCalledTimes(1);
    expect(lookup.find(r.hash)).toBe(r);
  });

  it("does not coalesce lookups of different hashes", async () => {
    const { fake, lookup } = setup();
    const a = fake.add(record());
    const b = fake.add(record());
    expect(await Promise.all([lookup.find(a.hash), lookup.find(b.hash)])).toEqual([a, b]);
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("invalidate() drops an entry: the next lookup asks the store", async () => {
    const { fake, lookup } = setup();
    const r = fake.add(record());
    await lookup.find(r.hash);
    const revoked = fake.add({ ...r, status: "revoked" });
    lookup.invalidate(r.hash);
    expect(await lookup.find(r.hash)).toEqual(revoked);
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("invalidate() drops a negative entry too", async () => {
    const { fake, lookup } = setup();
    const r = record();
    expect(await lookup.find(r.hash)).toBeUndefined();
    fake.add(r);
    lookup.invalidate(r.hash);
    expect(await lookup.find(r.hash)).toEqual(r);
  });

  it("answers but does not cache a fill that raced an invalidation of its hash", async () => {
    const { fake, lookup } = setup();
    const r = fake.add(record());
    const gate = fake.hold();
    const inFlight = lookup.find(r.hash); // the store call is now held
    lookup.invalidate(r.hash); // e.g. the key was revoked meanwhile
    fake.add({ ...r, status: "revoked" });
    gate.resolve(); // the store answers with what it read before the revocation... or after
    expect(await inFlight).toBeDefined();
    // Not cached: the next lookup goes to the store again.
    const next = lookup.find(r.hash);
    expect(next).toBeInstanceOf(Promise);
    expect(await next).toEqual({ ...r, status: "revoked" });
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("does not cache a stale record read before the invalidation", async () => {
    // The store call returns the old (active) record after the revocation was broadcast.
    const r = record();
    let release!: () => void;
    const slow = {
      getByHash: vi.fn(
        (_hash: string) =>
          new Promise<KeyRecord | undefined>((resolve) => {
            release = () => resolve(r);
          }),
      ),
    };
    const lookup = new KeyLookup(slow as unknown as KeyStore, {
      size: 10,
      ttlMs: 60_000,
      negativeTtlMs: 60_000,
    });
    const inFlight = lookup.find(r.hash);
    lookup.invalidate(r.hash);
    release();
    expect(await inFlight).toEqual(r); // answered
    slow.getByHash.mockResolvedValueOnce({ ...r, status: "revoked" });
    expect(await lookup.find(r.hash)).toEqual({ ...r, status: "revoked" }); // but not cached
    expect(slow.getByHash).toHaveBeenCalledTimes(2);
  });

  it("a lookup started after the invalidation does not join the stale fill, and is cached", async () => {
    const { fake, lookup } = setup();
    const r = fake.add(record());
    const stale = fake.hold();
    const first = lookup.find(r.hash);
    lookup.invalidate(r.hash);
    const second = lookup.find(r.hash);
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
    expect(await second).toEqual(r);
    stale.resolve();
    await first;
    expect(lookup.find(r.hash)).toEqual(r); // the second fill was cached
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("does not cache a fill that raced clear() (a subscription gap)", async () => {
    const { fake, lookup } = setup();
    const r = fake.add(record());
    const gate = fake.hold();
    const inFlight = lookup.find(r.hash);
    lookup.clear();
    gate.resolve();
    expect(await inFlight).toEqual(r);
    await lookup.find(r.hash);
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("passes a store failure on, caches nothing, and asks again next time", async () => {
    const { fake, lookup } = setup();
    const r = fake.add(record());
    fake.getByHash.mockRejectedValueOnce(new StoreUnavailableError("down"));
    const failing = [lookup.find(r.hash), lookup.find(r.hash)];
    for (const f of failing) await expect(f).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(fake.getByHash).toHaveBeenCalledTimes(1);
    expect(await lookup.find(r.hash)).toEqual(r);
    expect(fake.getByHash).toHaveBeenCalledTimes(2);
  });

  it("keeps at most `size` entries", async () => {
    const { fake, lookup } = setup({ size: 2 });
    const [a, b, c] = [fake.add(record()), fake.add(record()), fake.add(record())];
    for (const r of [a, b, c]) await lookup.find(r.hash);
    expect(lookup.find(c.hash)).toBe(c);
    expect(lookup.find(b.hash)).toBe(b);
    expect(lookup.find(a.hash)).toBeInstanceOf(Promise); // evicted
  });

  it("follows store events once started: an event invalidates, a gap clears everything", async () => {
    const { fake, lookup } = setup();
    const a = fake.add(record());
    const b = fake.add(record());
    await lookup.start();
    expect(fake.subscribe).toHaveBeenCalledTimes(1);
    await lookup.find(a.hash);
    await lookup.find(b.hash);
    fake.listener?.({ type: "revoked", id: a.id, hash: a.hash });
    expect(lookup.find(a.hash)).toBeInstanceOf(Promise);
    await lookup.find(a.hash);
    expect(lookup.find(b.hash)).toBe(b);
    fake.onGap?.();
    expect(lookup.find(a.hash)).toBeInstanceOf(Promise);
    expect(lookup.find(b.hash)).toBeInstanceOf(Promise);
    await lookup.stop();
    expect(fake.unsubscribe).toHaveBeenCalledTimes(1);
  });

  it("after a gap, checks entries again but serves a stale record while the store is down", async () => {
    const { fake, lookup } = setup();
    const known = fake.add(record());
    const unknownHash = "f".repeat(64);
    await lookup.start();
    await lookup.find(known.hash);
    await lookup.find(unknownHash);
    fake.onGap?.();
    expect(lookup.peek(known.hash)).toBeUndefined();
    fake.getByHash.mockRejectedValue(new StoreUnavailableError("down"));
    await expect(lookup.find(known.hash)).resolves.toBe(known);
    // A remembered "unknown" is never a reason to let anything through: the failure shows.
    await expect(lookup.find(unknownHash)).rejects.toThrow("down");
    fake.getByHash.mockReset();
    fake.getByHash.mockImplementation(async (hash: string) => fake.records.get(hash));
    await lookup.find(known.hash);
    expect(lookup.peek(known.hash)).toBe(known);
  });
});
