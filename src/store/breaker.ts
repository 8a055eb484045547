/**
 * A circuit breaker for store calls on the request path. After `failures`
 * consecutive failures it opens: calls fail at once, without paying the time
 * budget, for `cooldownMs`. Then one probe call is let through (half-open);
 * its success closes the breaker, its failure opens it again.
 */
import { StoreUnavailableError } from "./key-store.js";

export type BreakerState = "closed" | "open" | "half-open";

export interface BreakerOptions {
  failures: number;
  cooldownMs: number;
  now?: () => number;
  onChange?: (state: BreakerState) => void;
}

export class CircuitBreaker {
  private state: BreakerState = "closed";
  private consecutiveFailures = 0;
  private openedAt = 0;
  private probing = false;
  private readonly now: () => number;

  constructor(private readonly options: BreakerOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  get current(): BreakerState {
    return this.state;
  }

  /** Runs `call` unless the breaker is open; failures and successes move the state. */
  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.state === "open") {
      if (this.now() - this.openedAt < this.options.cooldownMs || this.probing) {
        throw new StoreUnavailableError("store circuit open: failing fast");
      }
      this.probing = true;
      this.transition("half-open");
    } else if (this.state === "half-open" && this.probing) {
      throw new StoreUnavailableError("store circuit half-open: probe in flight");
    }
    try {
      const result = await call();
      this.consecutiveFailures = 0;
      this.probing = false;
      if (this.state !== "closed") this.transition("closed");
      return result;
    } catch (error) {
      this.probing = false;
      this.consecutiveFailures++;
      if (this.state === "half-open" || this.consecutiveFailures >= this.options.failures) {
        this.openedAt = this.now();
        this.transition("open");
      }
      throw error;
    }
  }

  private transition(state: BreakerState): void {
    this.state = state;
    this.options.onChange?.(state);
  }
}
