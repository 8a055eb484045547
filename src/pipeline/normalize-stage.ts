import { GatewayError } from "../errors.js";
import type { RequestContext } from "./context.js";
import { normalizeTarget } from "./normalize.js";

/** Sets the canonical path and query, or refuses an ambiguous target with 400. */
export function normalize(ctx: RequestContext): GatewayError | undefined {
  const target = normalizeTarget(ctx.req.url ?? "");
  if (!target.ok) return new GatewayError("BAD_REQUEST", { detail: target.reason });
  ctx.path = target.path;
  ctx.query = target.query;
  return undefined;
}
