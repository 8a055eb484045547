import { GatewayError } from "../errors.js";
import type { RequestContext, Stage } from "./context.js";

/**
 * Runs `stages` in order from `start` until one returns an error. Stays
 * synchronous until a stage returns a promise, so requests through
 * synchronous stages (cached keys) allocate no promise for the chain.
 */
export function runStages(
  stages: readonly Stage[],
  ctx: RequestContext,
  start = 0,
): GatewayError | undefined | Promise<GatewayError | undefined> {
  for (let i = start; i < stages.length; i++) {
    const outcome = (stages[i] as Stage)(ctx);
    if (outcome === undefined) continue;
    if (outcome instanceof GatewayError) return outcome;
    return outcome.then((settled) => settled ?? runStages(stages, ctx, i + 1));
  }
  return undefined;
}
