import type { Config } from "../config/schema.js";
import { EmbeddedKeyStore } from "./embedded.js";
import type { KeyStore } from "./key-store.js";
import { RedisKeyStore } from "./redis.js";

/** Opens the configured key store. The embedded store refuses a file another process holds. */
export async function openKeyStore(config: Config["store"]): Promise<KeyStore> {
  if (config.type === "embedded") return EmbeddedKeyStore.open(config.embedded.path);
  return new RedisKeyStore({
    url: config.redis.url,
    namespace: config.redis.namespace,
    commandTimeoutMs: config.redis.command_timeout_ms,
    connectTimeoutMs: config.redis.connect_timeout_ms,
  });
}
