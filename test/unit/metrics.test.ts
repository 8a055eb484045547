import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createMetrics, LATENCY_BUCKETS } from "../../src/observability/metrics.js";
import { metricValue } from "../helpers/ratelimit.js";

function gatewayMetrics() {
  const registry = new Registry();
  return { registry, metrics: createMetrics(registry, { processMetrics: false }) };
}

/** The exposition lines of one metric family (HELP, TYPE and samples). */
function family(text: string, name: string): string[] {
  return text.split("\n").filter((line) => line.includes(`${name}_`) || line.includes(`${name} `));
}

describe("per-route request metrics", () => {
  it("expose the same histogram text as a prom-client histogram fed the same values", async () => {
    const { registry, metrics } = gatewayMetrics();
    const reference = new Registry();
    const expected = new Histogram({
      name: "keygate_request_duration_seconds",
      help: "Time from request start to the last byte of the response.",
      labelNames: ["route"],
      buckets: LATENCY_BUCKETS,
      registers: [reference],
    });
    // On a bound, between bounds, below the first and above the last.
    const observations: [string, number][] = [
      ["api", 0.0005],
      ["api", 0.003],
      ["api", 0.0001],
      ["api", 42],
      ["other", 0.25],
    ];
    for (const [route, seconds] of observations) {
      metrics.route(route).requestDuration.observe(seconds);
      expected.observe({ route }, seconds);
    }
    const name = "keygate_request_duration_seconds";
    expect(family(await registry.metrics(), name)).toEqual(family(await reference.metrics(), name));
    expect(metricValue(await registry.metrics(), `${name}_count`, { route: "api" })).toBe(4);
  });

  it("count requests by route, method and status, folded in at every scrape", async () => {
    const { registry, metrics } = gatewayMetrics();
    const api = metrics.route("api");
    api.countRequest("GET", 200);
    api.countRequest("GET", 200);
    api.countRequest("POST", 429);
    metrics.route("none").countRequest("GET", 404);
    let text = await registry.metrics();
    expect(metricValue(text, "keygate_requests_total", { route: "api", method: "GET", status: "200" })).toBe(
      2,
    );
    expect(metricValue(text, "keygate_requests_total", { route: "api", method: "POST", status: "429" })).toBe(
      1,
    );
    expect(metricValue(text, "keygate_requests_total", { route: "none", method: "GET", status: "404" })).toBe(
      1,
    );

    // The same route resolves to the same counts; a second scrape adds only what came since.
    metrics.route("api").countRequest("GET", 200);
    text = await registry.metrics();
    expect(metricValue(text, "keygate_requests_total", { route: "api", method: "GET", status: "200" })).toBe(
      3,
    );
    expect(metricValue(text, "keygate_requests_total", { route: "none", method: "GET", status: "404" })).toBe(
      1,
    );
  });

  it("add slot counts to the labelled calls of the same counter", async () => {
    const { registry, metrics } = gatewayMetrics();
    metrics.authenticated.pending += 2;
    metrics.authentications.inc({ result: "ok" });
    metrics.authentications.inc({ result: "invalid_key" });
    metrics.route("api").rateLimitAllowed.pending++;
    metrics.rateLimitDecisions.inc({ route: "api", result: "rejected" });
    const text = await registry.metrics();
    expect(metricValue(text, "keygate_authentications_total", { result: "ok" })).toBe(3);
    expect(metricValue(text, "keygate_authentications_total", { result: "invalid_key" })).toBe(1);
    expect(metricValue(text, "keygate_ratelimit_decisions_total", { route: "api", result: "allowed" })).toBe(
      1,
    );
    expect(metricValue(text, "keygate_ratelimit_decisions_total", { route: "api", result: "rejected" })).toBe(
      1,
    );
  });

  it("start again from zero after the registry is reset, and keep recording", async () => {
    const { registry, metrics } = gatewayMetrics();
    const api = metrics.route("api");
    api.upstreamDuration.observe(0.01);
    api.countRequest("GET", 200);
    registry.resetMetrics();
    api.upstreamDuration.observe(0.02);
    api.countRequest("GET", 200);
    const text = await registry.metrics();
    expect(metricValue(text, "keygate_upstream_duration_seconds_count", { route: "api" })).toBe(1);
    expect(metricValue(text, "keygate_upstream_duration_seconds_sum", { route: "api" })).toBe(0.02);
    // A count not yet folded in when the reset came goes with it.
    expect(metricValue(text, "keygate_requests_total", { route: "api", method: "GET", status: "200" })).toBe(
      1,
    );
  });
});
