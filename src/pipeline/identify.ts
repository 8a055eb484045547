/**
 * Identity headers for the upstream: who called (key id, plan, label), set
 * by keygate alone (`sanitize` removed any client copies). With a signing
 * secret, an HMAC lets the upstream check they came from keygate:
 *
 *   signature = "t=<unix seconds>,v1=" + hex(HMAC-SHA256(secret,
 *               "<t>\n<request id>\n<key id>\n<plan>\n<label header value>"))
 */
import { createHmac } from "node:crypto";
import type { Config } from "../config/schema.js";
import type { RequestContext } from "./context.js";

export function identityHeaderNames(auth: Config["auth"]): string[] {
  const names = Object.values(auth.identity_headers);
  if (auth.signature) names.push(auth.signature.header);
  return names;
}

export function identifyStage(auth: Config["auth"], now: () => number) {
  const { key_id, plan, label } = auth.identity_headers;
  const signature = auth.signature;
  return function identify(ctx: RequestContext): undefined {
    const principal = ctx.principal;
    if (!principal) return undefined;
    const headers = ctx.req.headers;
    const key = principal.key;
    const encodedLabel = encodeURIComponent(key.label);
    headers[key_id] = key.id;
    headers[plan] = key.plan;
    headers[label] = encodedLabel;
    if (signature) {
      const t = Math.floor(now() / 1000);
      const mac = createHmac("sha256", signature.secret)
        .update(`${t}\n${ctx.requestId}\n${key.id}\n${key.plan}\n${encodedLabel}`)
        .digest("hex");
      headers[signature.header] = `t=${t},v1=${mac}`;
    }
    return undefined;
  };
}
