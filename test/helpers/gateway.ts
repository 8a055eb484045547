/**
 * Starts a real gateway in this process on free ports, from YAML text, with
 * its log lines captured for assertions.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { Registry } from "prom-client";
import { parseConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/observability/logger.js";
import { createGateway } from "../../src/server/create.js";
import type { Gateway, ListeningAddresses } from "../../src/server/gateway.js";

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

/**
 * `yaml` is a full config; listeners default to 127.0.0.1 on port 0 unless it
 * sets them, and an embedded store lives in a fresh temporary directory unless
 * the config names a store. `env` feeds `${VAR}` placeholders.
 */
export async function startGateway(
  yaml: string,
  options: { logLevel?: string; env?: Record<string, string>; now?: () => number } = {},
): Promise<TestGateway> {
  const dataDir = await mkdtemp(join(tmpdir(), "keygate-test-"));
  const config = parseConfig(withTestStore(withTestListeners(yaml), dataDir), "test.yaml", options.env ?? {});
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
  const { gateway, registry } = await createGateway(config, {
    logger,
    processMetrics: false,
    now: options.now,
  });
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
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function withTestListeners(yaml: string): string {
  if (/^listeners:/m.test(yaml)) return yaml;
  return `listeners:\n  proxy: { host: 127.0.0.1, port: 0 }\n  admin: { host: 127.0.0.1, port: 0 }\n${yaml}`;
}

function withTestStore(yaml: string, dataDir: string): string {
  if (/^store:/m.test(yaml)) return yaml;
  return `${yaml}\nstore:\n  type: embedded\n  embedded: { path: ${join(dataDir, "keys.json")} }\n`;
}
