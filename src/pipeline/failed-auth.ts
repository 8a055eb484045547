/**
 * Failed-authentication throttle, per client address and per instance.
 * Kept in process on purpose: its job is to stop key guessing before it
 * costs a store lookup, so it must not itself need the store.
 */
import { LRUCache } from "lru-cache";

interface Window {
  start: number;
  failures: number;
}

export class FailedAuthGuard {
  private readonly windows: LRUCache<string, Window>;

  constructor(
    private limit: number,
    private windowMs: number,
    private readonly now: () => number,
    maxAddresses = 100_000,
  ) {
    this.windows = new LRUCache({ max: maxAddresses });
  }

  /** New settings from a reload; counts so far are kept (a reload is no way out of a throttle). */
  configure(limit: number, windowMs: number): void {
    if (windowMs !== this.windowMs) this.windows.clear();
    this.limit = limit;
    this.windowMs = windowMs;
  }

  /** Seconds the address must wait, or 0 when it may try. */
  retryAfter(address: string): number {
    const window = this.windows.get(address);
    if (!window || window.failures < this.limit) return 0;
    const wait = window.start + this.windowMs - this.now();
    return wait > 0 ? Math.ceil(wait / 1000) : 0;
  }

  fail(address: string): void {
    const now = this.now();
    const start = now - (now % this.windowMs);
    const window = this.windows.get(address);
    if (window && window.start === start) window.failures++;
    else this.windows.set(address, { start, failures: 1 });
  }
}
