import { describe, expect, it } from "vitest";
import type { WindowCheck } from "../../src/ratelimit/limit-store.js";
import { MemoryLimitStore } from "../../src/ratelimit/memory.js";
import { WINDOW_MS } from "../../src/ratelimit/window-math.js";

function clock(start: number) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms), set: (ms: number) => (now = ms) };
}

const minute = (limit: number, overrides: Partial<WindowCheck> = {}): WindowCheck => ({
  key: `k:minute:${limit}`,
  limit,
  windowMs: WINDOW_MS.minute,
  sliding: false,
  shadow: false,
  ...overrides,
});
const hour = (limit: number, overrides: Partial<WindowCheck> = {}): WindowCheck => ({
  key: `k:hour:${limit}`,
  limit,
  windowMs: WINDOW_MS.hour,
  sliding: false,
  shadow: false,
  ...overrides,
});

describe("MemoryLimitStore (fixed windows)", () => {
  it("admits exactly the limit, then refuses until the epoch-aligned window ends", () => {
    const t = clock(Date.UTC(2026, 0, 1, 12, 0, 10));
    const store = new MemoryLimitStore(t.now);
    const results = Array.from({ length: 5 }, () => store.consume([minute(3)], 1));
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false, false]);
    expect(results.map((r) => r.windows[0]!.remaining)).toEqual([2, 1, 0, 0, 0]);
    const refused = results[3]!.windows[0]!;
    expect(refused.resetAt).toBe(Date.UTC(2026, 0, 1, 12, 1, 0));
    expect(refused.retryAt).toBe(refused.resetAt);
    t.set(Date.UTC(2026, 0, 1, 12, 1, 0));
    expect(store.consume([minute(3)], 1).allowed).toBe(true);
    store.close();
  });

  it("is all or nothing: a request refused by the hour window leaves the minute window untouched", () => {
    const t = clock(Date.UTC(2026, 0, 1, 12, 0, 0));
    const store = new MemoryLimitStore(t.now);
    expect(store.consume([minute(10), hour(2)], 1).allowed).toBe(true);
    expect(store.consume([minute(10), hour(2)], 1).allowed).toBe(true);
    const refused = store.consume([minute(10), hour(2)], 1);
    expect(refused.allowed).toBe(false);
    expect(refused.windows[0]!.exceeded).toBe(false);
    expect(refused.windows[1]!.exceeded).toBe(true);
    // Minute window still at 2 of 10: the refused request consumed nothing.
    expect(store.consume([minute(10)], 1).windows[0]!.remaining).toBe(7);
    store.close();
  });

  it("shadow windows count and report but never refuse", () => {
    const t = clock(Date.UTC(2026, 0, 1, 12, 0, 0));
    const store = new MemoryLimitStore(t.now);
    const checks = [minute(1, { shadow: true, key: "shadow" })];
    expect(store.consume(checks, 1).allowed).toBe(true);
    const second = store.consume(checks, 1);
    expect(second.allowed).toBe(true);
    expect(second.windows[0]!.exceeded).toBe(true);
    expect(second.windows[0]!.remaining).toBe(0);
    store.close();
  });

  it("sliding windows weigh the previous window by the part not yet elapsed", () => {
    const start = Date.UTC(2026, 0, 1, 12, 0, 0);
    const t = clock(start);
    const store = new MemoryLimitStore(t.now);
    const check = minute(10, { sliding: true, key: "sliding" });
    for (let i = 0; i < 10; i++) expect(store.consume([check], 1).allowed).toBe(true);
    // A quarter into the next window, 75% of the previous 10 still counts: 7 used, 3 left.
    t.set(start + WINDOW_MS.minute + 15_000);
    const results = Array.from({ length: 4 }, () => store.consume([check], 1));
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false]);
    // It frees up when previous × unelapsed / window drops to limit − count − 1 = 6: at 24 s.
    expect(results[3]!.windows[0]!.retryAt).toBe(start + WINDOW_MS.minute + 24_000);
    t.set(start + WINDOW_MS.minute + 24_000);
    expect(store.consume([check], 1).allowed).toBe(true);
    store.close();
  });

  it("forgets the previous window after a gap of more than one window", () => {
    const start = Date.UTC(2026, 0, 1, 12, 0, 0);
    const t = clock(start);
    const store = new MemoryLimitStore(t.now);
    const check = minute(2, { sliding: true, key: "gap" });
    store.consume([check], 1);
    store.consume([check], 1);
    t.set(start + 2 * WINDOW_MS.minute + 1);
    expect(store.consume([check], 1).windows[0]!.remaining).toBe(1);
    store.close();
  });
});
