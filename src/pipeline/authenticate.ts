/**
 * Authentication: find the presented key, check its format (no store access
 * for a malformed key), look up its SHA-256 through the cache, and refuse
 * unknown, revoked and expired keys with one identical answer so a caller
 * cannot tell them apart.
 */
import { GatewayError } from "../errors.js";
import { hashKey, type KeyFormat } from "../keys/format.js";
import type { LastUsedTracker } from "../keys/last-used.js";
import type { KeyLookup } from "../keys/lookup.js";
import { isUsable, type KeyRecord } from "../keys/record.js";
import type { GatewayMetrics } from "../observability/metrics.js";
import type { RequestContext } from "./context.js";
import type { FailedAuthGuard } from "./failed-auth.js";
import { withoutHeader } from "./headers.js";
import { joinQuery, parseQuery } from "./query.js";

export interface AuthenticateDeps {
  formats: readonly KeyFormat[];
  lookup: KeyLookup;
  tracker: LastUsedTracker;
  /** Remove the credential before the request is forwarded. */
  stripCredential: boolean;
  now: () => number;
  guard: FailedAuthGuard;
  metrics: GatewayMetrics;
}

const CHALLENGE = { "www-authenticate": 'Bearer realm="keygate"' };
const INVALID_REQUEST = { "www-authenticate": 'Bearer realm="keygate", error="invalid_request"' };
const INVALID_TOKEN = { "www-authenticate": 'Bearer realm="keygate", error="invalid_token"' };

function unauthorized(detail: string, headers: Record<string, string>): GatewayError {
  return new GatewayError("UNAUTHORIZED", { detail, headers });
}

/** The presented key, or the error that ends the request. Strips the credential when asked. */
function extractCredential(ctx: RequestContext, strip: boolean): string | GatewayError {
  const auth = ctx.route!.config.auth;
  const req = ctx.req;
  const found: string[] = [];

  const authorization = auth.bearer ? req.headers.authorization : undefined;
  if (authorization !== undefined) {
    const space = authorization.indexOf(" ");
    const scheme = space === -1 ? authorization : authorization.slice(0, space);
    if (scheme.toLowerCase() !== "bearer")
      return unauthorized("authorization scheme is not Bearer", INVALID_REQUEST);
    const credential = authorization.slice(space + 1).trim();
    if (space === -1 || credential === "") return unauthorized("empty bearer credential", INVALID_REQUEST);
    if (/\s/.test(credential)) return unauthorized("more than one bearer credential", INVALID_REQUEST);
    found.push(credential);
    if (strip) req.headers = withoutHeader(req.headers, "authorization");
  }
  if (auth.header !== undefined) {
    // From the headers as they are now: a stripped Bearer credential is not found twice.
    const value = req.headers[auth.header];
    if (typeof value === "string") {
      found.push(value.trim());
      if (strip) req.headers = withoutHeader(req.headers, auth.header);
    }
  }
  if (auth.query !== undefined && ctx.query !== "") {
    const { value, rest } = takeQueryParameter(ctx.query, auth.query);
    if (value !== undefined) {
      found.push(value);
      if (strip) ctx.query = rest;
    }
  }
  if (found.length === 0) return unauthorized("no credential", CHALLENGE);
  if (found.length > 1) return unauthorized("credentials in more than one place", INVALID_REQUEST);
  return found[0] as string;
}

/** Finds `name` in a raw query (`?a=1&b=2`) and returns its decoded value and the query without it. */
export function takeQueryParameter(query: string, name: string): { value: string | undefined; rest: string } {
  let value: string | undefined;
  const kept: string[] = [];
  for (const pair of parseQuery(query)) {
    if (value === undefined && pair.name === name) value = pair.value;
    else if (pair.raw !== "") kept.push(pair.raw);
  }
  return { value, rest: joinQuery(kept) };
}

export function authenticateStage(deps: AuthenticateDeps) {
  const { formats, lookup, tracker, now, guard, metrics } = deps;

  /** A presented credential that failed counts toward its address's failed-attempt limit. */
  const refuse = (ctx: RequestContext, result: string, error: GatewayError): GatewayError => {
    guard.fail(ctx.clientAddress);
    metrics.authentications.inc({ result });
    return error;
  };

  const accept = (
    ctx: RequestContext,
    hash: string,
    record: KeyRecord | undefined,
  ): GatewayError | undefined => {
    if (record === undefined) {
      return refuse(ctx, "invalid_key", new GatewayError("INVALID_API_KEY", { detail: "unknown key" }));
    }
    if (!isUsable(record, now())) {
      const detail = `${record.status === "revoked" ? "revoked" : "expired"} key ${record.id}`;
      return refuse(ctx, "invalid_key", new GatewayError("INVALID_API_KEY", { detail }));
    }
    ctx.principal = { key: record };
    tracker.record(hash, record.id);
    metrics.authenticated.pending++;
    return undefined;
  };

  const storeUnavailable = (cause: unknown): GatewayError => {
    metrics.authentications.inc({ result: "store_error" });
    return new GatewayError("STORE_UNAVAILABLE", {
      detail: (cause as Error)?.message ?? String(cause),
      cause,
    });
  };

  return function authenticate(ctx: RequestContext) {
    if (ctx.route!.config.auth.public) return undefined;
    const key = extractCredential(ctx, deps.stripCredential);
    if (typeof key !== "string") {
      metrics.authentications.inc({ result: "missing" });
      return key;
    }
    const wellFormed = formats.some((format) => format.matches(key));
    const hash = wellFormed ? hashKey(key) : "";
    // Too many failed authentications from this address: nothing it presents reaches the store.
    // A key this instance has already verified costs no lookup, so it still passes
    // (a client behind the same NAT as a broken one is not locked out).
    const wait = guard.retryAfter(ctx.clientAddress);
    if (wait > 0) {
      const cached = wellFormed ? lookup.peek(hash) : undefined;
      if (cached && isUsable(cached, now())) return accept(ctx, hash, cached);
      metrics.authentications.inc({ result: "throttled" });
      return new GatewayError("RATE_LIMITED", {
        detail: "too many failed authentications from this address",
        params: { retry_after: wait },
        headers: { "retry-after": String(wait) },
      });
    }
    if (!wellFormed) return refuse(ctx, "malformed", unauthorized("malformed key", INVALID_TOKEN));

    let found: ReturnType<KeyLookup["find"]>;
    try {
      found = lookup.find(hash);
    } catch (error) {
      return storeUnavailable(error);
    }
    if (found instanceof Promise) return found.then((record) => accept(ctx, hash, record), storeUnavailable);
    return accept(ctx, hash, found);
  };
}
