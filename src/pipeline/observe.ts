/**
 * The access log line and request metrics, written once when the response
 * closes. Fields come from the context one by one, so no header or body can
 * slip into a log line.
 */
import type { ServerResponse } from "node:http";
import type { Logger } from "../observability/logger.js";
import type { GatewayMetrics } from "../observability/metrics.js";
import type { RequestContext } from "./context.js";
import { joinQuery, parseQuery } from "./query.js";

/** Status logged when the client went away before the response finished (nginx's convention). */
export const CLIENT_CLOSED = 499;

export type Observer = (ctx: RequestContext, res: ServerResponse) => void;

export interface ObserverOptions {
  /** Whether each request gets an access line (metrics are recorded either way). */
  accessLog: boolean;
  /** Returns the query safe to log. */
  redactQuery: (query: string) => string;
}

export function createObserver(logger: Logger, metrics: GatewayMetrics, options: ObserverOptions): Observer {
  const { accessLog, redactQuery } = options;

  return function observe(ctx, res) {
    const durationMs = performance.now() - ctx.startedAt;
    // An unfinished response was cut short: by an upstream fault (ctx.error says which) or by the client.
    const status = res.writableFinished || ctx.error ? res.statusCode : CLIENT_CLOSED;
    const method = ctx.req.method ?? "";
    const route = metrics.route(ctx.route?.name ?? "none");
    route.countRequest(method, status);
    route.requestDuration.observe(durationMs / 1000);
    if (ctx.upstreamMs >= 0) route.upstreamDuration.observe(ctx.upstreamMs / 1000);
    if (!accessLog) return;
    logger.info(
      {
        req_id: ctx.requestId,
        method,
        route: ctx.route?.name,
        path: ctx.path,
        query: ctx.query === "" ? undefined : redactQuery(ctx.query),
        status,
        aborted: res.writableFinished ? undefined : true,
        duration_ms: round(durationMs),
        upstream_ms: ctx.upstreamMs >= 0 ? round(ctx.upstreamMs) : undefined,
        client: ctx.clientAddress,
        key_id: ctx.principal?.key.id,
        error: ctx.error?.code,
        error_detail: ctx.error?.detail,
      },
      "request",
    );
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** Returns a function that blanks the values of `names` in a raw query string. */
export function queryRedactor(names: readonly string[]): (query: string) => string {
  if (names.length === 0) return (query) => query;
  const wanted = new Set(names);
  return (query) =>
    joinQuery(
      parseQuery(query).map((pair) =>
        wanted.has(pair.name) ? `${pair.raw.split("=")[0]}=[REDACTED]` : pair.raw,
      ),
    );
}
