/**
 * Starts a real gateway in this process on free ports, from YAML text, with
 * its log lines captured for assertions.
 */
import { Writable } from "node:stream";
import { Registry } from "prom-client";
import { parseConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/observability/logger.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { Gateway, type ListeningAddresses } from "../../src/server/gateway.js";

export interface TestGateway {
  gateway: Gateway;
  proxyUrl: string;
  adminUrl: string;
  addresses: ListeningAddresses;
  registry: Registry;
  /** Every log line written so far, raw. */
  logText(): string;
  logLines(): Record<string, unknown>[];
  stop(): Promise<void>;
}

/** `yaml` is a full config; listeners default to 127.0.0.1 on port 0 unless it sets them. */
export async function startGateway(yaml: string, options: { logLevel?: string } = {}): Promise<TestGateway> {
  const config = parseConfig(withTestListeners(yaml), "test.yaml", {});
  let captured = "";
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      captured += chunk.toString();
      callback();
    },
  });
  const logger = createLogger({
    level: options.logLevel ?? "trace",
    redactHeaders: config.logging.redact_headers,
    destination,
  });
  const registry = new Registry();
  const gateway = new Gateway(config, { logger, registry, metrics: createMetrics(registry, { processMetrics: false }) });
  const addresses = await gateway.listen();
  let stopped = false;
  return {
    gateway,
    addresses,
    registry,
    proxyUrl: `http://127.0.0.1:${addresses.proxy.port}`,
    adminUrl: `http://127.0.0.1:${addresses.admin.port}`,
    logText: () => captured,
    logLines: () =>
      captured
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await gateway.shutdown();
    },
  };
}

function withTestListeners(yaml: string): string {
  if (/^listeners:/m.test(yaml)) return yaml;
  return `listeners:\n  proxy: { host: 127.0.0.1, port: 0 }\n  admin: { host: 127.0.0.1, port: 0 }\n${yaml}`;
}
