// What every peer does before proxying, written the way their docs suggest:
// Bearer key -> format check -> SHA-256 -> HGETALL in Redis (keygate's data model).
import { createHash } from "node:crypto";

export const settings = {
  port: Number(process.env.PORT ?? 0),
  upstream: process.env.UPSTREAM ?? "http://127.0.0.1:3000",
  redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  namespace: process.env.NAMESPACE ?? "bench:",
  limitPerMinute: Number(process.env.LIMIT ?? 1_000_000_000),
};

const KEY_FORMAT = /^rp_[0-9a-f]{64}$/;

/** Resolves the key record, or an [status, body] refusal. */
export async function authenticate(redis, authorization) {
  const match = /^Bearer (\S+)$/i.exec(authorization ?? "");
  if (!match || !KEY_FORMAT.test(match[1])) return { refusal: [401, { error: "UNAUTHORIZED" }] };
  const hash = createHash("sha256").update(match[1]).digest("hex");
  const record = await redis.hgetall(`${settings.namespace}key:${hash}`);
  if (!record.id || record.status !== "active") return { refusal: [403, { error: "INVALID_API_KEY" }] };
  return { record };
}

export function announce(server) {
  const { port } = server.address();
  process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
}
