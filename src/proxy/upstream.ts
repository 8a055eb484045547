/**
 * One keep-alive agent per upstream, built at config load. Without an agent
 * http-proxy-3 opens (and closes) a TCP connection per request.
 */
import { readFileSync } from "node:fs";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { RouteConfig } from "../config/schema.js";

export interface Upstream {
  readonly target: URL;
  readonly agent: HttpAgent;
  readonly verifyTls: boolean;
  readonly ca: Buffer | undefined;
}

/**
 * Creates the upstream of a route. Routes with an identical upstream block
 * share one agent (and so one connection pool) through `pool`; one that the
 * previous configuration already had (`previous`, on reload) is kept with its
 * open connections.
 */
export function createUpstream(
  config: RouteConfig["upstream"],
  pool: Map<string, Upstream>,
  previous?: ReadonlyMap<string, Upstream>,
): Upstream {
  const poolKey = JSON.stringify(config);
  const existing = pool.get(poolKey) ?? previous?.get(poolKey);
  if (existing) {
    pool.set(poolKey, existing);
    return existing;
  }

  const target = new URL(config.url);
  const common = {
    keepAlive: true,
    maxSockets: config.max_sockets,
    maxFreeSockets: config.max_idle_sockets,
    scheduling: "lifo" as const,
    // Closing idle sockets before the upstream does avoids reusing one it is closing (a spurious 502).
    timeout: config.idle_timeout_ms,
  };
  let upstream: Upstream;
  if (target.protocol === "https:") {
    const ca = config.tls?.ca_file ? readFileSync(config.tls.ca_file) : undefined;
    const verifyTls = config.tls?.verify ?? true;
    const agent = new HttpsAgent({
      ...common,
      ca,
      rejectUnauthorized: verifyTls,
      servername: config.tls?.server_name,
    });
    upstream = { target, agent, verifyTls, ca };
  } else {
    upstream = { target, agent: new HttpAgent(common), verifyTls: true, ca: undefined };
  }
  pool.set(poolKey, upstream);
  return upstream;
}

/** Closes the pooled connections of every upstream in `pool` that `keep` does not still use. */
export function destroyUpstreams(
  pool: ReadonlyMap<string, Upstream>,
  keep?: ReadonlyMap<string, Upstream>,
): void {
  for (const [key, upstream] of pool) if (keep?.get(key) !== upstream) upstream.agent.destroy();
}
