/**
 * Gateway metrics on an injected prom-client registry (never the global
 * default, so several gateways can live in one process, as tests do).
 * Labels are bounded: route names and status codes from the configuration,
 * never paths, keys or client addresses.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry } from "prom-client";

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface GatewayMetrics {
  readonly requests: Counter<"route" | "method" | "status">;
  readonly requestDuration: Histogram<"route">;
  readonly upstreamDuration: Histogram<"route">;
  /**
   * Readers of the requests in flight, summed when the gauge is scraped: counting in the
   * gauge itself would cost two updates on every request.
   */
  readonly inFlightReaders: Set<() => number>;
  readonly upstreamErrors: Counter<"route" | "code">;
  readonly configReloads: Counter<"result">;
  readonly rateLimitDecisions: Counter<"route" | "result">;
  readonly authentications: Counter<"result">;
  readonly storeCircuit: Gauge;
}

export function createMetrics(
  registry: Registry,
  options: { processMetrics?: boolean } = {},
): GatewayMetrics {
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: "keygate_" });
  const registers = [registry];
  const inFlightReaders = new Set<() => number>();
  new Gauge({
    name: "keygate_requests_in_flight",
    help: "Requests being handled.",
    registers,
    collect() {
      let sum = 0;
      for (const read of inFlightReaders) sum += read();
      this.set(sum);
    },
  });
  return {
    inFlightReaders,
    requests: new Counter({
      name: "keygate_requests_total",
      help: "Requests answered, by route, method and status ('none' when no route matched).",
      labelNames: ["route", "method", "status"],
      registers,
    }),
    requestDuration: new Histogram({
      name: "keygate_request_duration_seconds",
      help: "Time from request start to the last byte of the response.",
      labelNames: ["route"],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    upstreamDuration: new Histogram({
      name: "keygate_upstream_duration_seconds",
      help: "Time from forwarding to the upstream's response headers.",
      labelNames: ["route"],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    upstreamErrors: new Counter({
      name: "keygate_upstream_errors_total",
      help: "Upstream failures by route and mapped error code.",
      labelNames: ["route", "code"],
      registers,
    }),
    configReloads: new Counter({
      name: "keygate_config_reloads_total",
      help: "Configuration reloads by result (ok, rejected).",
      labelNames: ["result"],
      registers,
    }),
    rateLimitDecisions: new Counter({
      name: "keygate_ratelimit_decisions_total",
      help: "Rate-limit outcomes: allowed, rejected, shadow_exceeded, fail_open, fail_closed.",
      labelNames: ["route", "result"],
      registers,
    }),
    authentications: new Counter({
      name: "keygate_authentications_total",
      help: "Authentication outcomes: ok, missing, malformed, invalid_key, plan_denied, throttled, store_error.",
      labelNames: ["result"],
      registers,
    }),
    storeCircuit: new Gauge({
      name: "keygate_store_circuit_open",
      help: "1 while the store circuit breaker is open or probing, 0 when closed.",
      registers,
    }),
  };
}
