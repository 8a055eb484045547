/**
 * Builds a gateway from a validated configuration: reads the admin tokens,
 * opens the key store and wires logger and metrics. Used by `keygate serve`,
 * `keygate demo` and the tests, so all three run the same assembly.
 */
import { readFile } from "node:fs/promises";
import { Registry } from "prom-client";
import type { Config } from "../config/schema.js";
import { createLogger, type Logger } from "../observability/logger.js";
import { createMetrics, type GatewayMetrics } from "../observability/metrics.js";
import { openStores, type Stores } from "../store/open.js";
import { Gateway } from "./gateway.js";

export interface CreateGatewayOptions {
  logger?: Logger;
  registry?: Registry;
  /** Collect Node process metrics (off in tests that run several gateways). */
  processMetrics?: boolean;
  /** Use these stores instead of opening the configured ones. */
  stores?: Stores;
  now?: () => number;
}

export interface AssembledGateway {
  gateway: Gateway;
  logger: Logger;
  registry: Registry;
  metrics: GatewayMetrics;
}

export async function createGateway(
  config: Config,
  options: CreateGatewayOptions = {},
): Promise<AssembledGateway> {
  const logger =
    options.logger ??
    createLogger({ level: config.logging.level, redactHeaders: config.logging.redact_headers });
  const registry = options.registry ?? new Registry();
  const metrics = createMetrics(registry, { processMetrics: options.processMetrics ?? true });
  const adminTokens = await readAdminTokens(config.admin);
  if (adminTokens.length === 0) logger.warn("no admin token configured: the key-management API is off");
  const now = options.now ?? Date.now;
  const stores =
    options.stores ?? (await openStores(config, now, (open) => metrics.storeCircuit.set(open ? 1 : 0)));
  const gateway = new Gateway(config, {
    logger,
    registry,
    metrics,
    store: stores.keys,
    limiter: stores.limits,
    adminTokens,
    now,
  });
  return { gateway, logger, registry, metrics };
}

async function readAdminTokens(admin: Config["admin"]): Promise<string[]> {
  const tokens = [...admin.tokens];
  if (admin.token_file !== undefined) {
    const lines = (await readFile(admin.token_file, "utf8")).split("\n").map((l) => l.trim());
    const fromFile = lines.filter((l) => l !== "" && !l.startsWith("#"));
    const short = fromFile.find((t) => t.length < 16);
    if (short !== undefined) throw new Error(`${admin.token_file}: admin tokens need at least 16 characters`);
    tokens.push(...fromFile);
  }
  return tokens;
}
