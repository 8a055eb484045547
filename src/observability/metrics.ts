/**
 * Gateway metrics on an injected prom-client registry (never the global
 * default, so several gateways can live in one process, as tests do).
 * Labels are bounded: route names and status codes from the configuration,
 * never paths, keys or client addresses.
 *
 * What every forwarded request updates (its route's request count and two
 * durations, the accepted authentication, the admitted rate-limit decision)
 * is counted in plain numbers of a {@link RouteMetrics} and folded into
 * prom-client when `/metrics` is scraped: prom-client validates and hashes
 * the labels of every `inc` and `observe`, which cost ~2.5 µs per request
 * (CPU profile of the Redis path). Everything else calls prom-client directly.
 */
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  type LabelValues,
  type MetricValueWithName,
  type Registry,
} from "prom-client";

/** Upper bounds (seconds) of the request and upstream duration histograms. */
export const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The value of `key` in `map`, made by `create` and kept on first use. */
function cached<K, V>(map: Map<K, V>, key: K, create: (key: K) => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create(key);
    map.set(key, value);
  }
  return value;
}

/** One label set of a counter: incremented in place, added to the counter at scrape time. */
export interface CounterSlot {
  pending: number;
}

/**
 * A prom-client counter whose hot label sets are counted in {@link CounterSlot}s, added to it
 * when it is collected (scraped) and dropped with it on reset. Other label sets take `inc`.
 */
export class SlottedCounter<L extends string> extends Counter<L> {
  private readonly slots = new Map<string, CounterSlot & { readonly labels: LabelValues<L> }>();

  constructor(config: { name: string; help: string; labelNames: readonly L[]; registers: Registry[] }) {
    super({
      ...config,
      collect() {
        (this as SlottedCounter<L>).fold();
      },
    });
  }

  /** The slot of `labels` (created on first use; keep it rather than ask per request). */
  slot(labels: LabelValues<L>): CounterSlot {
    return cached(this.slots, JSON.stringify(labels), () => ({ labels, pending: 0 }));
  }

  override reset(): void {
    super.reset();
    // prom-client's constructor calls reset() before this class's fields exist.
    for (const slot of this.slots?.values() ?? []) slot.pending = 0;
  }

  /** Adds every slot's count to the counter (prom-client calls `collect` before each read). */
  private fold(): void {
    for (const slot of this.slots.values()) {
      if (slot.pending === 0) continue;
      this.inc(slot.labels, slot.pending);
      slot.pending = 0;
    }
  }
}

/** The observations of one route in a {@link RouteHistogram}. */
export class HistogramSeries {
  /** Observations per bucket, not cumulative; the last one is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

/**
 * A histogram labelled by route, registered on a prom-client registry like one
 * of its own (same exposition, same `_bucket`/`_sum`/`_count` series), whose
 * observations cost a bucket search and three additions.
 */
export class RouteHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly series = new Map<string, HistogramSeries>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registers: Registry[],
  ) {
    // The registry's type asks for one of prom-client's classes; it reads only name, get and reset.
    for (const registry of registers) registry.registerMetric(this as never);
  }

  /** The series of `route` (created on first use). */
  route(route: string): HistogramSeries {
    return cached(this.series, route, () => new HistogramSeries(this.bounds));
  }

  /** What prom-client's registry reads to expose it (the shape its own histograms return). */
  get() {
    const values: MetricValueWithName<string>[] = [];
    const bucket = `${this.name}_bucket`;
    for (const [route, series] of this.series) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += series.counts[i] as number;
        values.push({ labels: { le, route }, value: cumulative, metricName: bucket });
      });
      values.push({ labels: { le: "+Inf", route }, value: series.count, metricName: bucket });
      values.push({ labels: { route }, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { route }, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** Zeroes every series in place: {@link RouteMetrics} keep theirs. */
  reset(): void {
    for (const series of this.series.values()) {
      series.counts.fill(0);
      series.sum = 0;
      series.count = 0;
    }
  }
}

/** What one route's forwarded requests update, resolved once per route. */
export class RouteMetrics {
  readonly requestDuration: HistogramSeries;
  readonly upstreamDuration: HistogramSeries;
  /** keygate_ratelimit_decisions_total{result="allowed"} of this route. */
  readonly rateLimitAllowed: CounterSlot;
  private readonly byMethod = new Map<string, Map<number, CounterSlot>>();

  constructor(
    private readonly name: string,
    private readonly requests: SlottedCounter<"route" | "method" | "status">,
    durations: { request: RouteHistogram; upstream: RouteHistogram },
    decisions: SlottedCounter<"route" | "result">,
  ) {
    this.requestDuration = durations.request.route(name);
    this.upstreamDuration = durations.upstream.route(name);
    this.rateLimitAllowed = decisions.slot({ route: name, result: "allowed" });
  }

  /** Counts one answered request in keygate_requests_total. */
  countRequest(method: string, status: number): void {
    const slot = this.byMethod.get(method)?.get(status) ?? this.addSlot(method, status);
    slot.pending++;
  }

  private addSlot(method: string, status: number): CounterSlot {
    const slot = this.requests.slot({ route: this.name, method, status });
    cached(this.byMethod, method, () => new Map()).set(status, slot);
    return slot;
  }
}

export interface GatewayMetrics {
  /** The per-request metrics of route `name` ("none" when no route matched), created on first use. */
  route(name: string): RouteMetrics;
  /** keygate_authentications_total{result="ok"}. */
  readonly authenticated: CounterSlot;
  /**
   * Readers of the requests in flight, summed when the gauge is scraped: counting in the
   * gauge itself would cost two updates on every request.
   */
  readonly inFlightReaders: Set<() => number>;
  readonly upstreamErrors: Counter<"route" | "code">;
  readonly configReloads: Counter<"result">;
  readonly rateLimitDecisions: SlottedCounter<"route" | "result">;
  readonly authentications: SlottedCounter<"result">;
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
  const requests = new SlottedCounter({
    name: "keygate_requests_total",
    help: "Requests answered, by route, method and status ('none' when no route matched).",
    labelNames: ["route", "method", "status"],
    registers,
  });
  const rateLimitDecisions = new SlottedCounter({
    name: "keygate_ratelimit_decisions_total",
    help: "Rate-limit outcomes: allowed, rejected, shadow_exceeded, fail_open, fail_closed.",
    labelNames: ["route", "result"],
    registers,
  });
  const authentications = new SlottedCounter({
    name: "keygate_authentications_total",
    help: "Authentication outcomes: ok, missing, malformed, invalid_key, plan_denied, throttled, store_error.",
    labelNames: ["result"],
    registers,
  });
  const durations = {
    request: new RouteHistogram(
      "keygate_request_duration_seconds",
      "Time from request start to the last byte of the response.",
      LATENCY_BUCKETS,
      registers,
    ),
    upstream: new RouteHistogram(
      "keygate_upstream_duration_seconds",
      "Time from forwarding to the upstream's response headers.",
      LATENCY_BUCKETS,
      registers,
    ),
  };
  const routes = new Map<string, RouteMetrics>();
  const newRoute = (name: string) => new RouteMetrics(name, requests, durations, rateLimitDecisions);
  return {
    route: (name) => cached(routes, name, newRoute),
    authenticated: authentications.slot({ result: "ok" }),
    inFlightReaders,
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
    rateLimitDecisions,
    authentications,
    storeCircuit: new Gauge({
      name: "keygate_store_circuit_open",
      help: "1 while the store circuit breaker is open or probing, 0 when closed.",
      registers,
    }),
  };
}
