/**
 * Route matching. Routes are compiled once at config load into predicates;
 * matching walks them in declaration order and takes the first that fits
 * host, method and canonical path.
 */

import type { RouteConfig } from "../config/schema.js";
import { GatewayError } from "../errors.js";
import type { RequestContext } from "./context.js";

export interface CompiledRoute {
  readonly name: string;
  readonly config: RouteConfig;
  /** Methods allowed, or undefined for all. */
  readonly methods: ReadonlySet<string> | undefined;
  readonly matchesHost: (host: string) => boolean;
  readonly matchesPath: (path: string) => boolean;
  /** Maps the canonical path to the path sent upstream (prefix stripping). */
  readonly upstreamPath: (path: string) => string;
}

export function compileRoute(config: RouteConfig): CompiledRoute {
  const { match } = config;
  const prefix = match.path_prefix === undefined ? undefined : trimTrailingSlash(match.path_prefix);
  const matchesPath = prefix !== undefined ? prefixMatcher(prefix) : patternMatcher(match.path as string);
  return {
    name: config.name,
    config,
    // HEAD is served wherever GET is, as HTTP expects.
    methods: match.methods
      ? new Set(match.methods.includes("GET") ? [...match.methods, "HEAD"] : match.methods)
      : undefined,
    matchesHost: hostMatcher(match.host),
    matchesPath,
    upstreamPath:
      config.strip_prefix && prefix !== undefined && prefix !== ""
        ? (path) => path.slice(prefix.length) || "/"
        : (path) => path,
  };
}

function trimTrailingSlash(path: string): string {
  return path.endsWith("/") ? path.slice(0, -1) : path;
}

/** `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`. `/` matches everything. */
function prefixMatcher(prefix: string): (path: string) => boolean {
  if (prefix === "") return () => true;
  const withSlash = `${prefix}/`;
  return (path) => path === prefix || path.startsWith(withSlash);
}

/** `*` is exactly one segment; a final `**` is any remainder, including none. */
function patternMatcher(pattern: string): (path: string) => boolean {
  const parts = pattern.split("/").slice(1);
  let source = "^";
  parts.forEach((part, index) => {
    if (part === "**" && index === parts.length - 1) source += "(?:/.*)?";
    else if (part === "*") source += "/[^/]+";
    else source += `/${part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`;
  });
  const regex = new RegExp(`${source}/?$`);
  return (path) => regex.test(path);
}

function hostMatcher(host: string | undefined): (host: string) => boolean {
  if (host === undefined) return () => true;
  const wanted = host.toLowerCase();
  if (wanted.startsWith("*.")) {
    const suffix = wanted.slice(1);
    return (h) => h.endsWith(suffix) && h.length > suffix.length;
  }
  return (h) => h === wanted;
}

/** Host header without port, lower case. */
function requestHost(header: string | undefined): string {
  if (!header) return "";
  const end = header.startsWith("[") ? header.indexOf("]") + 1 : header.indexOf(":");
  return (end > 0 ? header.slice(0, end) : header).toLowerCase();
}

/** Builds the routing stage over an ordered route table. */
export function routeStage(routes: readonly CompiledRoute[]) {
  return function route(ctx: RequestContext): GatewayError | undefined {
    const host = requestHost(ctx.req.headers.host);
    const method = ctx.req.method ?? "GET";
    for (const candidate of routes) {
      if (candidate.methods && !candidate.methods.has(method)) continue;
      if (!candidate.matchesHost(host) || !candidate.matchesPath(ctx.path)) continue;
      if (ctx.upgrade && !candidate.config.websocket) continue;
      ctx.route = candidate;
      return undefined;
    }
    return new GatewayError("NOT_FOUND", { detail: `no route for ${method} ${ctx.path}` });
  };
}
