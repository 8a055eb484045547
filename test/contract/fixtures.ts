/**
 * Shared pieces of the key store contract tests: records built from real keys (so a test can look
 * for the full key where it must never be), a Redis store per test on its own namespace, polling.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { displayPrefix, hashKey } from "../../src/keys/format.js";
import type { KeyRecord } from "../../src/keys/record.js";
import { newKeyId } from "../../src/keys/service.js";
import { RedisKeyStore, type RedisStoreOptions } from "../../src/store/redis.js";
import { uniqueNamespace } from "../helpers/redis.js";

/** A full key of the default `reelplus` format: what a client sends, never what a store keeps. */
export const FULL_KEY_PATTERN = /rp_[0-9a-f]{64}/;

export function makeKey(): string {
  return `rp_${randomBytes(32).toString("hex")}`;
}

/** Noon UTC on 2025-01-10: fixed times keep usage days predictable. */
export const T0 = Date.UTC(2025, 0, 10, 12, 0, 0);
export const DAY = 86_400_000;

let sequence = 0;

/** A record for a freshly generated key; every optional field undefined unless overridden. */
export function issue(overrides: Partial<KeyRecord> = {}): { key: string; record: KeyRecord } {
  const key = makeKey();
  sequence++;
  const record: KeyRecord = {
    id: newKeyId(),
    hash: hashKey(key),
    prefix: displayPrefix(key),
    label: `key ${sequence}`,
    plan: "free",
    status: "active",
    createdAt: T0 + sequence,
    lastUsedAt: undefined,
    expiresAt: undefined,
    metadata: undefined,
    rotatedTo: undefined,
    ...overrides,
  };
  return { key, record };
}

export function makeRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  return issue(overrides).record;
}

export async function tempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "keygate-store-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export function redisStoreOptions(url: string, namespace = uniqueNamespace()): RedisStoreOptions {
  return { url, namespace, commandTimeoutMs: 500, connectTimeoutMs: 1_000 };
}

/** A plain client for looking at what the store wrote (fails fast, never queues). */
export function inspector(url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 1_000 });
  client.on("error", () => {});
  return client;
}

/** Every key of a namespace. */
export async function keysOf(client: Redis, namespace: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await client.scan(cursor, "MATCH", `${namespace}*`, "COUNT", 1000);
    cursor = next;
    found.push(...batch);
  } while (cursor !== "0");
  return found.sort();
}

export async function dropNamespace(client: Redis, namespace: string): Promise<void> {
  const keys = await keysOf(client, namespace);
  if (keys.length > 0) await client.del(...keys);
}

/** Opens a Redis store on a fresh namespace; `close` also removes what it wrote. */
export function openRedisStore(url: string): {
  store: RedisKeyStore;
  namespace: string;
  peer: () => RedisKeyStore;
  cleanup: () => Promise<void>;
} {
  const namespace = uniqueNamespace("keygate-contract");
  const opened: RedisKeyStore[] = [];
  const open = () => {
    const store = new RedisKeyStore(redisStoreOptions(url, namespace));
    opened.push(store);
    return store;
  };
  const store = open();
  return {
    store,
    namespace,
    peer: open,
    cleanup: async () => {
      await Promise.all(opened.map((s) => s.close()));
      const client = inspector(url);
      try {
        await dropNamespace(client, namespace);
      } finally {
        client.disconnect();
      }
    },
  };
}

/** Retries `check` until it stops throwing or `timeoutMs` passes (then throws its last error). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(everyMs);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves with how long `operation` took to settle, and how it settled. */
export async function timed<T>(
  operation: () => Promise<T>,
): Promise<{ ms: number; value?: T; error?: unknown; settled: "resolved" | "rejected" }> {
  const started = performance.now();
  try {
    const value = await operation();
    return { ms: performance.now() - started, value, settled: "resolved" };
  } catch (error) {
    return { ms: performance.now() - started, error, settled: "rejected" };
  }
}
