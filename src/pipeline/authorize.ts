/**
 * Authorization: the key's plan must exist and include API access. A key
 * whose plan was removed from the configuration is treated as a plan without
 * access rather than as an unknown key, so the answer tells an operator where
 * to look.
 */
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors.js";
import type { RequestContext } from "./context.js";

export function authorizeStage(plans: Config["plans"]) {
  return function authorize(ctx: RequestContext): GatewayError | undefined {
    const principal = ctx.principal;
    if (!principal) return undefined;
    const plan = plans[principal.key.plan];
    if (!plan)
      return new GatewayError("PLAN_LIMIT", { detail: `plan "${principal.key.plan}" is not configured` });
    if (!plan.api_access)
      return new GatewayError("PLAN_LIMIT", { detail: `plan "${principal.key.plan}" has no API access` });
    return undefined;
  };
}
