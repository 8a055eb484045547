/**
 * Tools for the rate-limit tests: a Redis client of the test's own (store
 * time, counters, cleanup), window alignment, requests over a chosen
 * keep-alive agent, the rate-limit headers of an answer, /metrics values and
 * percentiles.
 */
import type { Agent } from "node:http";
import { Redis } from "ioredis";
import { ADMIN_TOKEN, adminCall, type KeyView, sleep } from "./keys.js";
import { send } from "./upstream.js";

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;

/** A connected ioredis client (the caller disconnects it). */
export async function connectRedis(url: string): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/** The store's clock (Redis TIME), epoch ms: the clock keygate's limiter uses. */
export async function redisNow(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/**
 * Makes sure at least `marginMs` are left in the current epoch-aligned window
 * of `windowMs` (by Redis TIME): if fewer are, waits for the next window.
 * Returns the Redis time afterwards.
 */
export async function awaitWindowRoom(redis: Redis, windowMs: number, marginMs: number): Promise<number> {
  const now = await redisNow(redis);
  const left = windowMs - (now % windowMs);
  if (left >= marginMs) return now;
  await sleep(left + 50);
  return redisNow(redis);
}

/** Deletes every Redis key under `namespace`. */
export async function dropNamespace(url: string, namespace: string): Promise<void> {
  const client = await connectRedis(url);
  try {
    const keys = await client.keys(`${namespace}*`);
    if (keys.length > 0) await client.del(...keys);
  } finally {
    client.disconnect();
  }
}

/** The counter HASH of a key-subject rule window, as the limiter names it. */
export function counterKey(namespace: string, keyId: string, rule: string, window: string, limit: number) {
  return `${namespace}rl:{k:${keyId}}:${rule}:${window}:${limit}`;
}

/** Field `c` (count) of a counter HASH; 0 when it does not exist. */
export async function counterCount(redis: Redis, key: string): Promise<number> {
  return Number((await redis.hget(key, "c")) ?? 0);
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One request through the proxy, on `agent` (keep-alive) or a fresh connection. */
export async function call(
  port: number,
  path: string,
  options: {
    key?: string;
    method?: string;
    body?: string;
    agent?: Agent;
    headers?: Record<string, string>;
  } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
  if (options.body !== undefined) headers["content-type"] ??= "application/json";
  const result = await send(port, {
    method: options.method ?? "GET",
    path,
    headers,
    body: options.body,
    agent: options.agent ?? false,
  });
  return { status: result.status, headers: result.headers, text: result.body.toString("utf8") };
}

export interface LegacyHeaders {
  limit: number | undefined;
  remaining: number | undefined;
  reset: number | undefined;
  retryAfter: number | undefined;
}

function numberHeader(value: string | string[] | undefined): number | undefined {
  if (value === undefined || Array.isArray(value)) return undefined;
  return Number(value);
}

/** X-RateLimit-Limit / -Remaining / -Reset and Retry-After as numbers (undefined when absent). */
export function legacyHeaders(answer: Answer): LegacyHeaders {
  return {
    limit: numberHeader(answer.headers["x-ratelimit-limit"]),
    remaining: numberHeader(answer.headers["x-ratelimit-remaining"]),
    reset: numberHeader(answer.headers["x-ratelimit-reset"]),
    retryAfter: numberHeader(answer.headers["retry-after"]),
  };
}

/** Creates a key through the admin API, optionally with its own limits; 201 or the test fails. */
export async function createKeyWithLimits(
  adminUrl: string,
  input: { label: string; plan: string; limits?: Record<string, Record<string, number>> },
): Promise<KeyView & { key: string; limits: Record<string, Record<string, number>> }> {
  const answer = await adminCall<KeyView & { key: string; limits: Record<string, Record<string, number>> }>(
    adminUrl,
    "POST",
    "/v1/keys",
    input,
    ADMIN_TOKEN,
  );
  if (answer.status !== 201) throw new Error(`create key: HTTP ${answer.status} ${answer.text}`);
  return answer.body;
}

/** The Prometheus exposition of an admin listener. */
export async function metricsText(adminUrl: string): Promise<string> {
  const response = await fetch(`${adminUrl}/metrics`);
  return response.text();
}

/**
 * The value of one sample in a Prometheus exposition: `name` with exactly
 * the given labels (any order); 0 when the sample is absent.
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = (match[2] ?? "")
      .split(/,(?=[a-zA-Z_][a-zA-Z0-9_]*=")/)
      .filter(Boolean)
      .sort();
    if (have.length === wanted.length && have.every((pair, i) => pair === wanted[i])) return Number(match[3]);
  }
  return 0;
}

/** The p-th percentile (0–100) of `values`, nearest-rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}
