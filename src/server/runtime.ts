/**
 * Everything the data plane derives from a configuration, computed once at
 * load (and again on reload): compiled routes, the stage list, upstream pools
 * and error bodies. A request reads one Runtime from start to end, so a reload
 * never changes the rules under a request in flight.
 */
import type { Config } from "../config/schema.js";
import { compileKeyFormat, type KeyFormat } from "../keys/format.js";
import type { LastUsedTracker } from "../keys/last-used.js";
import type { KeyLookup } from "../keys/lookup.js";
import type { Logger } from "../observability/logger.js";
import type { GatewayMetrics } from "../observability/metrics.js";
import { authenticateStage } from "../pipeline/authenticate.js";
import { authorizeStage } from "../pipeline/authorize.js";
import type { Stage } from "../pipeline/context.js";
import type { FailedAuthGuard } from "../pipeline/failed-auth.js";
import { identifyStage, identityHeaderNames } from "../pipeline/identify.js";
import { normalize } from "../pipeline/normalize-stage.js";
import { queryRedactor } from "../pipeline/observe.js";
import { rateLimitStage } from "../pipeline/ratelimit.js";
import { compileErrorRenderer, type ErrorRenderer } from "../pipeline/respond.js";
import { type CompiledRoute, compileRoute, routeStage } from "../pipeline/route.js";
import { sanitizeStage } from "../pipeline/sanitize.js";
import type { Forwarder, ForwardTarget } from "../proxy/forward.js";
import { createUpstream, type Upstream } from "../proxy/upstream.js";
import type { LimitStore } from "../ratelimit/limit-store.js";
import { compilePlans, type PlanPolicy } from "../ratelimit/policy.js";

export interface Runtime {
  readonly config: Config;
  readonly routes: readonly CompiledRoute[];
  /** Stages before forwarding, in order. */
  readonly stages: readonly Stage[];
  readonly targets: ReadonlyMap<CompiledRoute, ForwardTarget>;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly render: ErrorRenderer;
  readonly redactQuery: (query: string) => string;
  readonly formats: readonly KeyFormat[];
  readonly policies: ReadonlyMap<string, PlanPolicy>;
}

/** The long-lived services stages call into (they outlive a reload). */
export interface RuntimeServices {
  lookup: KeyLookup;
  tracker: LastUsedTracker;
  limiter: LimitStore;
  guard: FailedAuthGuard;
  forwarder: Forwarder;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Wall clock, epoch ms. */
  now: () => number;
}

/** `previous` is the runtime being replaced (on reload): its unchanged upstream pools are reused. */
export function compileRuntime(config: Config, services: RuntimeServices, previous?: Runtime): Runtime {
  const routes = config.routes.map(compileRoute);
  const upstreams = new Map<string, Upstream>();
  const targets = new Map<CompiledRoute, ForwardTarget>();
  for (const route of routes)
    targets.set(
      route,
      services.forwarder.target(route, createUpstream(route.config.upstream, upstreams, previous?.upstreams)),
    );

  const formats = config.keys.formats.map(compileKeyFormat);
  const policies = compilePlans(config);
  const stages: Stage[] = [
    sanitizeStage({
      trustedProxies: config.trusted_proxies,
      protocol: config.listeners.proxy.tls ? "https" : "http",
      reservedHeaders: identityHeaderNames(config.auth),
    }),
    normalize,
    routeStage(routes),
    authenticateStage({
      formats,
      lookup: services.lookup,
      tracker: services.tracker,
      stripCredential: config.auth.strip_credential,
      now: services.now,
      guard: services.guard,
      metrics: services.metrics,
    }),
    authorizeStage(policies, services.metrics),
    rateLimitStage({
      limiter: services.limiter,
      policies,
      options: config.rate_limit,
      namespace: config.store.type === "redis" ? config.store.redis.namespace : "",
      metrics: services.metrics,
      logger: services.logger,
      monotonic: () => performance.now(),
    }),
    identifyStage(config.auth, services.now),
  ];
  // Credentials accepted in a query parameter must never reach a log line.
  const redactedParameters = [
    ...config.logging.redact_query,
    ...config.routes.flatMap((r) => (r.auth.query === undefined ? [] : [r.auth.query])),
  ];
  return {
    config,
    routes,
    stages,
    targets,
    upstreams,
    render: compileErrorRenderer(config.errors),
    redactQuery: queryRedactor(redactedParameters),
    formats,
    policies,
  };
}
