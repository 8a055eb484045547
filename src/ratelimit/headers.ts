/**
 * Rate-limit response headers from a decision.
 *
 * Legacy (on by default, as the GigaReels seed shows): X-RateLimit-Limit,
 * -Remaining and -Reset (Unix epoch seconds) of the most restrictive window:
 * on a 429 the refusing window that frees up last, otherwise the enforced
 * window with the fewest requests left. Retry-After on 429.
 *
 * IETF (opt-in, draft-ietf-httpapi-ratelimit-headers-10): one named policy
 * per window, `RateLimit-Policy: "rule.minute";q=10;w=60` and
 * `RateLimit: "rule.minute";r=7;t=42` (t in seconds until the window resets).
 */
import type { Decision } from "./limit-store.js";
import type { CompiledRule, CompiledWindow } from "./policy.js";

export interface RateLimitHeaderOptions {
  legacy: boolean;
  ietf: boolean;
}

export interface AppliedWindow {
  readonly rule: CompiledRule;
  readonly window: CompiledWindow;
}

export interface RenderedLimit {
  headers: Record<string, string>;
  /** Seconds until a retry can pass (only meaningful when refused). */
  retryAfter: number;
}

export function renderRateLimit(
  decision: Decision,
  applied: readonly AppliedWindow[],
  options: RateLimitHeaderOptions,
): RenderedLimit {
  const { windows, now } = decision;
  let chosen = -1;
  let retryAt = now;
  for (let i = 0; i < windows.length; i++) {
    const w = windows[i]!;
    const enforced = !applied[i]!.rule.shadow;
    if (!decision.allowed) {
      if (enforced && w.exceeded && (chosen === -1 || w.retryAt > retryAt)) {
        chosen = i;
        retryAt = w.retryAt;
      }
    } else if (chosen === -1 || isTighter(i, chosen)) {
      chosen = i;
    }
  }
  function isTighter(i: number, than: number): boolean {
    const a = applied[i]!.rule.shadow;
    const b = applied[than]!.rule.shadow;
    if (a !== b) return !a;
    return windows[i]!.remaining < windows[than]!.remaining;
  }

  const headers: Record<string, string> = {};
  const retryAfter = Math.max(1, Math.ceil((retryAt - now) / 1000));
  if (options.legacy && chosen !== -1) {
    headers["x-ratelimit-limit"] = String(applied[chosen]!.window.limit);
    headers["x-ratelimit-remaining"] = String(windows[chosen]!.remaining);
    headers["x-ratelimit-reset"] = String(Math.ceil(windows[chosen]!.resetAt / 1000));
  }
  if (options.ietf) {
    const policies: string[] = [];
    const states: string[] = [];
    for (let i = 0; i < windows.length; i++) {
      const { rule, window } = applied[i]!;
      const id = `"${rule.name}.${window.name}"`;
      policies.push(`${id};q=${window.limit};w=${window.ms / 1000}`);
      states.push(
        `${id};r=${windows[i]!.remaining};t=${Math.max(0, Math.ceil((windows[i]!.resetAt - now) / 1000))}`,
      );
    }
    headers["ratelimit-policy"] = policies.join(", ");
    headers.ratelimit = states.join(", ");
  }
  if (!decision.allowed) headers["retry-after"] = String(retryAfter);
  return { headers, retryAfter };
}
