/**
 * Rate limiting: every window of every rule that applies to (plan, route) is
 * checked and counted in one store call. A refusal is a 429 with the same
 * headers as an admitted response plus Retry-After. When the store fails,
 * the route's `rate_limit.fail` decides: closed → 503, open → forward
 * unlimited (counted in a metric, logged at most once per interval).
 */
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { GatewayMetrics } from "../observability/metrics.js";
import { type AppliedWindow, renderRateLimit } from "../ratelimit/headers.js";
import type { Decision, LimitStore, WindowCheck } from "../ratelimit/limit-store.js";
import { type KeyLimitOverrides, type PlanPolicy, withOverrides } from "../ratelimit/policy.js";
import type { RequestContext } from "./context.js";

export interface RateLimitDeps {
  limiter: LimitStore;
  policies: ReadonlyMap<string, PlanPolicy>;
  options: Config["rate_limit"];
  /** Prefix of counter keys (the store namespace). */
  namespace: string;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Monotonic ms, for the fail-open log interval. */
  monotonic: () => number;
}

export function rateLimitStage(deps: RateLimitDeps) {
  const { limiter, policies, options, metrics, namespace } = deps;
  const lastFailOpenLog = new Map<string, number>();

  const decide = (
    ctx: RequestContext,
    applied: AppliedWindow[],
    decision: Decision,
  ): GatewayError | undefined => {
    const route = ctx.route!.name;
    const { headers, retryAfter } = renderRateLimit(decision, applied, options.headers);
    decision.windows.forEach((w, i) => {
      if (w.exceeded && applied[i]!.rule.shadow)
        metrics.rateLimitDecisions.inc({ route, result: "shadow_exceeded" });
    });
    if (!decision.allowed) {
      metrics.rateLimitDecisions.inc({ route, result: "rejected" });
      return new GatewayError("RATE_LIMITED", { params: { retry_after: retryAfter }, headers });
    }
    metrics.route(route).rateLimitAllowed.pending++;
    ctx.responseHeaders = headers;
    return undefined;
  };

  const storeFailed = (ctx: RequestContext, cause: unknown): GatewayError | undefined => {
    const route = ctx.route!;
    if (route.config.rate_limit.fail === "closed") {
      metrics.rateLimitDecisions.inc({ route: route.name, result: "fail_closed" });
      return new GatewayError("STORE_UNAVAILABLE", { detail: (cause as Error)?.message, cause });
    }
    metrics.rateLimitDecisions.inc({ route: route.name, result: "fail_open" });
    const now = deps.monotonic();
    if (
      now - (lastFailOpenLog.get(route.name) ?? Number.NEGATIVE_INFINITY) >=
      options.fail_open_log_interval_ms
    ) {
      lastFailOpenLog.set(route.name, now);
      deps.logger.warn(
        { route: route.name, err: (cause as Error)?.message },
        "rate-limit store unavailable: forwarding without limits (fail: open)",
      );
    }
    return undefined;
  };

  return function rateLimit(ctx: RequestContext) {
    const principal = ctx.principal;
    if (!principal) return undefined;
    const policy = policies.get(principal.key.plan);
    const rules = policy?.rulesFor(ctx.route!.name);
    if (!rules || rules.length === 0) return undefined;

    const overrides = principal.key.limits as KeyLimitOverrides | undefined;
    const applied: AppliedWindow[] = [];
    const checks: WindowCheck[] = [];
    for (const base of rules) {
      const rule = withOverrides(base, overrides);
      // `<ns>rl:{<subject>` + `}:<rule>:<window>:<limit>`: the {subject} hash tag keeps one
      // subject's counters in one Cluster slot.
      const prefix =
        rule.subject === "key"
          ? `${namespace}rl:{k:${principal.key.id}`
          : rule.subject === "plan"
            ? `${namespace}rl:{p:${policy!.name}`
            : `${namespace}rl:{c:${ctx.clientAddress}`;
      for (const window of rule.windows) {
        applied.push({ rule, window });
        checks.push({
          key: prefix + window.keySuffix,
          limit: window.limit,
          windowMs: window.ms,
          sliding: rule.sliding,
          shadow: rule.shadow,
        });
      }
    }
    let decision: ReturnType<LimitStore["consume"]>;
    try {
      decision = limiter.consume(checks, 1);
    } catch (error) {
      return storeFailed(ctx, error);
    }
    if (decision instanceof Promise) {
      return decision.then(
        (settled) => decide(ctx, applied, settled),
        (error: unknown) => storeFailed(ctx, error),
      );
    }
    return decide(ctx, applied, decision);
  };
}
