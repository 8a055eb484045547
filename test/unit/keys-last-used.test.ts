/**
 * LastUsedTracker: the request path only counts in memory; a flush writes one touch per key with
 * the counts summed, a failed flush is kept for the next one, and stop() writes the remainder.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { LastUsedTracker } from "../../src/keys/last-used.js";
import type { Touch } from "../../src/keys/record.js";
import type { KeyStore } from "../../src/store/key-store.js";
import { StoreUnavailableError } from "../../src/store/key-store.js";

function fakeStore() {
  const batches: Touch[][] = [];
  const touch = vi.fn(async (batch: readonly Touch[]) => {
    batches.push([...batch]);
  });
  return { store: { touch } as unknown as KeyStore, touch, batches };
}

function clock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const byHash = (a: Touch, b: Touch) => (a.hash < b.hash ? -1 : 1);

afterEach(() => {
  vi.useRealTimers();
});

describe("LastUsedTracker", () => {
  it("writes one touch per key per flush, counts summed, last time kept", async () => {
    const { store, touch, batches } = fakeStore();
    const time = clock();
    const tracker = new LastUsedTracker(store, 60_000, time.now);
    tracker.record("h1", "id1");
    time.advance(10);
    tracker.record("h2", "id2");
    time.advance(10);
    tracker.record("h1", "id1");
    time.advance(10);
    tracker.record("h1", "id1");
    await tracker.flush();
    expect(touch).toHaveBeenCalledTimes(1);
    expect(batches[0]?.sort(byHash)).toEqual([
      { hash: "h1", id: "id1", lastUsedAt: 1_030, count: 3 },
      { hash: "h2", id: "id2", lastUsedAt: 1_010, count: 1 },
    ]);
    // Written entries are gone: the next flush has nothing to do.
    await tracker.flush();
    expect(touch).toHaveBeenCalledTimes(1);
  });

  it("does not call the store when nothing was recorded", async () => {
    const { store, touch } = fakeStore();
    await new LastUsedTracker(store, 60_000).flush();
    expect(touch).not.toHaveBeenCalled();
  });

  it("shares one write between concurrent flushes", async () => {
    const { store, touch } = fakeStore();
    let release!: () => void;
    touch.mockImplementationOnce(() => new Promise<void>((resolve) => (release = resolve)));
    const tracker = new LastUsedTracker(store, 60_000);
    tracker.record("h1", "id1");
    const a = tracker.flush();
    const b = tracker.flush();
    expect(touch).toHaveBeenCalledTimes(1);
    release();
    await Promise.all([a, b]);
    expect(touch).toHaveBeenCalledTimes(1);
  });

  it("keeps a failed batch and writes it, merged with newer uses, on the next flush", async () => {
    const { store, touch, batches } = fakeStore();
    const time = clock();
    const onError = vi.fn();
    const tracker = new LastUsedTracker(store, 60_000, time.now, onError);
    const failure = new StoreUnavailableError("redis down");
    let fail!: () => void;
    touch.mockImplementationOnce(
      () =>
        new Promise<void>((_, reject) => {
          fail = () => reject(failure);
        }),
    );
    tracker.record("h1", "id1");
    tracker.record("h1", "id1");
    tracker.record("h2", "id2");
    const failing = tracker.flush();
    // Uses that arrive while the failing write is in flight.
    time.advance(500);
    tracker.record("h1", "id1");
    tracker.record("h3", "id3");
    fail();
    await failing;
    expect(onError).toHaveBeenCalledWith(failure);

    await tracker.flush();
    expect(touch).toHaveBeenCalledTimes(2);
    expect(batches[0]?.sort(byHash)).toEqual([
      { hash: "h1", id: "id1", lastUsedAt: 1_500, count: 3 },
      { hash: "h2", id: "id2", lastUsedAt: 1_000, count: 1 },
      { hash: "h3", id: "id3", lastUsedAt: 1_500, count: 1 },
    ]);
    await tracker.flush();
    expect(touch).toHaveBeenCalledTimes(2);
  });

  it("flushes on its interval once started", async () => {
    vi.useFakeTimers();
    const { store, touch, batches } = fakeStore();
    const tracker = new LastUsedTracker(store, 1_000, () => 5);
    tracker.start();
    tracker.record("h1", "id1");
    await vi.advanceTimersByTimeAsync(999);
    expect(touch).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(batches).toEqual([[{ hash: "h1", id: "id1", lastUsedAt: 5, count: 1 }]]);
    await vi.advanceTimersByTimeAsync(5_000); // nothing new: no write
    expect(touch).toHaveBeenCalledTimes(1);
    await tracker.stop();
  });

  it("stop() writes the remainder and stops the timer", async () => {
    vi.useFakeTimers();
    const { store, touch, batches } = fakeStore();
    const tracker = new LastUsedTracker(store, 1_000, () => 7);
    tracker.start();
    tracker.record("h1", "id1");
    tracker.record("h1", "id1");
    await tracker.stop();
    expect(batches).toEqual([[{ hash: "h1", id: "id1", lastUsedAt: 7, count: 2 }]]);
    tracker.record("h2", "id2");
    await vi.advanceTimersByTimeAsync(10_000);
    expect(touch).toHaveBeenCalledTimes(1);
  });

  it("stop() waits for a flush in flight, then writes what arrived meanwhile", async () => {
    const { store, touch, batches } = fakeStore();
    let release!: () => void;
    touch.mockImplementationOnce(async (batch: readonly Touch[]) => {
      await new Promise<void>((resolve) => (release = resolve));
      batches.push([...batch]);
    });
    const tracker = new LastUsedTracker(store, 60_000, () => 1);
    tracker.record("h1", "id1");
    const inFlight = tracker.flush();
    tracker.record("h2", "id2");
    const stopping = tracker.stop();
    release();
    await Promise.all([inFlight, stopping]);
    expect(batches).toEqual([
      [{ hash: "h1", id: "id1", lastUsedAt: 1, count: 1 }],
      [{ hash: "h2", id: "id2", lastUsedAt: 1, count: 1 }],
    ]);
  });

  it("stop() retries a batch whose flush failed", async () => {
    const { store, touch, batches } = fakeStore();
    touch.mockRejectedValueOnce(new StoreUnavailableError("down"));
    const tracker = new LastUsedTracker(store, 60_000, () => 3);
    tracker.record("h1", "id1");
    await tracker.flush();
    expect(batches).toEqual([]);
    await tracker.stop();
    expect(batches).toEqual([[{ hash: "h1", id: "id1", lastUsedAt: 3, count: 1 }]]);
  });
});
