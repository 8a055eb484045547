import type { Config } from "../config/schema.js";
import type { LimitStore } from "../ratelimit/limit-store.js";
import { MemoryLimitStore } from "../ratelimit/memory.js";
import { RedisLimitStore } from "../ratelimit/redis.js";
import { CircuitBreaker } from "./breaker.js";
import { EmbeddedKeyStore } from "./embedded.js";
import type { KeyStore } from "./key-store.js";
import { RedisKeyStore } from "./redis.js";

export interface Stores {
  keys: KeyStore;
  limits: LimitStore;
  /** Guards request-path store calls (undefined for the embedded store, which does no I/O there). */
  breaker: CircuitBreaker | undefined;
}

/**
 * Opens the configured stores: keys and rate-limit counters always live in
 * the same backend, so one outage has one behaviour. The embedded store
 * refuses a file another process holds.
 */
export async function openStores(
  config: Config,
  now: () => number,
  onBreaker?: (open: boolean) => void,
): Promise<Stores> {
  if (config.store.type === "embedded") {
    return {
      keys: await EmbeddedKeyStore.open(config.store.embedded.path),
      limits: new MemoryLimitStore(now),
      breaker: undefined,
    };
  }
  const { redis } = config.store;
  const breaker = new CircuitBreaker({
    failures: config.rate_limit.breaker.failures,
    cooldownMs: config.rate_limit.breaker.cooldown_ms,
    onChange: (state) => onBreaker?.(state !== "closed"),
  });
  const keys = new RedisKeyStore({
    url: redis.url,
    namespace: redis.namespace,
    commandTimeoutMs: redis.command_timeout_ms,
    adminTimeoutMs: redis.admin_timeout_ms,
    connectTimeoutMs: redis.connect_timeout_ms,
    breaker,
  });
  return { keys, limits: new RedisLimitStore(keys.connection, breaker), breaker };
}
