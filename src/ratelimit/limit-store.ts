/**
 * The limiter's contract: check and count several windows in one atomic
 * step. Enforced windows are all-or-nothing: if any of them would go over its
 * limit, none is counted and the request is rejected. Shadow windows are
 * counted when they themselves have room and the request is admitted, and
 * never reject; they report what enforcement would do.
 */
export interface WindowCheck {
  /** Store key of this counter (includes subject, rule, window and limit). */
  readonly key: string;
  readonly limit: number;
  readonly windowMs: number;
  readonly sliding: boolean;
  readonly shadow: boolean;
}

export interface WindowResult {
  /** Requests left in the window after this one (never negative). */
  readonly remaining: number;
  /** Epoch ms when the current window ends. */
  readonly resetAt: number;
  /** Epoch ms when a request of the same cost could next pass this window (now when it passes). */
  readonly retryAt: number;
  /** This window alone would refuse the request. */
  readonly exceeded: boolean;
}

export interface Decision {
  readonly allowed: boolean;
  /** Store time (epoch ms) at the decision. */
  readonly now: number;
  /** One per check, same order. */
  readonly windows: readonly WindowResult[];
}

export interface LimitStore {
  /**
   * Rejects with StoreUnavailableError when the store cannot answer in its time
   * budget. An in-process store answers synchronously, so the request pipeline
   * needs no promise for it.
   */
  consume(checks: readonly WindowCheck[], cost: number): Decision | Promise<Decision>;
}
