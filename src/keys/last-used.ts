/**
 * Batches last-used times and usage counts: the request path only updates a
 * map; a timer writes at most one entry per key per `flushIntervalMs`.
 *
 * Staleness bound: a key's stored last_used_at lags its real last use by at
 * most one flush interval plus one store write (and a failed flush is retried
 * with the next one, merged). On shutdown the remainder is flushed.
 */
import type { KeyStore } from "../store/key-store.js";
import type { Touch } from "./record.js";

interface Pending {
  id: string;
  lastUsedAt: number;
  count: number;
}

export class LastUsedTracker {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly store: KeyStore,
    private readonly flushIntervalMs: number,
    private readonly now: () => number = Date.now,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.flushIntervalMs);
    this.timer.unref();
  }

  /** Notes one successful request of key `id` (hash `hash`). */
  record(hash: string, id: string): void {
    const entry = this.pending.get(hash);
    if (entry) {
      entry.count++;
      entry.lastUsedAt = this.now();
    } else {
      this.pending.set(hash, { id, lastUsedAt: this.now(), count: 1 });
    }
  }

  /** Writes everything noted so far. Concurrent calls share one write. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.pending.size === 0) return Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    const touches: Touch[] = [...batch].map(([hash, e]) => ({
      hash,
      id: e.id,
      lastUsedAt: e.lastUsedAt,
      count: e.count,
    }));
    this.flushing = this.store
      .touch(touches)
      .catch((error: unknown) => {
        this.restore(batch);
        this.onError(error);
      })
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  /** Puts a failed batch back, merged with what arrived meanwhile. */
  private restore(batch: Map<string, Pending>): void {
    for (const [hash, entry] of batch) {
      const newer = this.pending.get(hash);
      if (newer) newer.count += entry.count;
      else this.pending.set(hash, entry);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
  }
}
