/**
 * Authorization: the key's plan must exist, include API access, and allow
 * the matched route. A key whose plan was removed from the configuration is
 * treated as a plan without access rather than as an unknown key, so the
 * answer tells an operator where to look.
 */
import { GatewayError } from "../errors.js";
import type { GatewayMetrics } from "../observability/metrics.js";
import type { PlanPolicy } from "../ratelimit/policy.js";
import type { RequestContext } from "./context.js";

export function authorizeStage(policies: ReadonlyMap<string, PlanPolicy>, metrics: GatewayMetrics) {
  return function authorize(ctx: RequestContext): GatewayError | undefined {
    const principal = ctx.principal;
    if (!principal) return undefined;
    const plan = principal.key.plan;
    const policy = policies.get(plan);
    if (!policy?.apiAccess) {
      metrics.authentications.inc({ result: "plan_denied" });
      const detail = policy ? `plan "${plan}" has no API access` : `plan "${plan}" is not configured`;
      return new GatewayError("PLAN_LIMIT", { detail });
    }
    if (policy.allowedRoutes && !policy.allowedRoutes.has(ctx.route!.name)) {
      metrics.authentications.inc({ result: "plan_denied" });
      return new GatewayError("INSUFFICIENT_PERMISSIONS", {
        detail: `plan "${plan}" may not call route ${ctx.route!.name}`,
      });
    }
    return undefined;
  };
}
