/**
 * The embedded store's limiter: the same decisions as the Redis script, in
 * process. Counters expire after two windows; a sweep drops them so memory
 * follows active subjects only.
 */
import type { Decision, LimitStore, WindowCheck, WindowResult } from "./limit-store.js";
import { type CounterState, retryAt, roll, used } from "./window-math.js";

interface Counter extends CounterState {
  expiresAt: number;
}

export class MemoryLimitStore implements LimitStore {
  private readonly counters = new Map<string, Counter>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /** Synchronous: the embedded store never waits on I/O. */
  consume(checks: readonly WindowCheck[], cost: number): Decision {
    const now = this.now();
    const states = checks.map((c) => roll(this.counters.get(c.key), now, c.windowMs));
    const exceeded = checks.map(
      (c, i) => used(states[i] as CounterState, now, c.windowMs, c.sliding) + cost > c.limit,
    );
    const allowed = checks.every((c, i) => c.shadow || !exceeded[i]);
    const windows: WindowResult[] = checks.map((check, i) => {
      const state = states[i] as CounterState;
      const counts = allowed && !exceeded[i];
      if (counts) {
        this.counters.set(check.key, {
          ...state,
          count: state.count + cost,
          expiresAt: state.start + 2 * check.windowMs,
        });
      }
      const usedNow = used(state, now, check.windowMs, check.sliding) + (counts ? cost : 0);
      return {
        remaining: Math.max(0, check.limit - usedNow),
        resetAt: state.start + check.windowMs,
        retryAt: exceeded[i] ? retryAt(state, check.windowMs, check.sliding, check.limit, cost) : now,
        exceeded: exceeded[i] as boolean,
      };
    });
    return { allowed, now, windows };
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, counter] of this.counters) if (counter.expiresAt <= now) this.counters.delete(key);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
