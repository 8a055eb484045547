/**
 * Small tools for the API-key tests: the admin API over real HTTP, requests
 * through the proxy, key material (hash, random keys in the seed formats),
 * polling, and config snippets.
 */
import { createHash, randomBytes } from "node:crypto";
import { send } from "./upstream.js";

/** An admin token of the required length (16+), used by every key test. */
export const ADMIN_TOKEN = "test-admin-token-5f1c0a9e7b3d";

/** SHA-256 of `text`, lower-case hex (how keygate identifies a key). */
export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A well-formed ReelPlus key (`rp_` + 64 lower-case hex) that no store knows. */
export function randomRpKey(): string {
  return `rp_${randomBytes(32).toString("hex")}`;
}

const ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** A well-formed GigaReels key (`giga_` + 32 alphanumeric) that no store knows. */
export function randomGigaKey(): string {
  let body = "";
  for (const byte of randomBytes(32)) body += ALPHANUMERIC[byte % ALPHANUMERIC.length];
  return `giga_${body}`;
}

/** What the admin API answers for a key (create and rotate add `key`). */
export interface KeyView {
  id: string;
  prefix: string;
  label: string;
  plan: string;
  status: "active" | "revoked";
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  metadata: Record<string, string>;
  rotated_to: string | null;
  key?: string;
  previous?: KeyView;
}

export interface ApiAnswer<T = unknown> {
  status: number;
  body: T;
  text: string;
}

/** One call to the admin API (JSON in, JSON out). */
export async function adminCall<T = unknown>(
  adminUrl: string,
  method: string,
  path: string,
  body?: unknown,
  token = ADMIN_TOKEN,
): Promise<ApiAnswer<T>> {
  const response = await fetch(`${adminUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, text, body: (text === "" ? undefined : JSON.parse(text)) as T };
}

/** Creates a key through the admin API; fails the test unless it answered 201. */
export async function createKey(
  adminUrl: string,
  input: { label: string; plan: string; expires_at?: string; format?: string },
  token = ADMIN_TOKEN,
): Promise<KeyView & { key: string }> {
  const answer = await adminCall<KeyView & { key: string }>(adminUrl, "POST", "/v1/keys", input, token);
  if (answer.status !== 201) throw new Error(`create key: HTTP ${answer.status} ${answer.text}`);
  return answer.body;
}

export async function revokeKey(adminUrl: string, id: string): Promise<KeyView> {
  const answer = await adminCall<KeyView>(adminUrl, "POST", `/v1/keys/${id}/revoke`);
  if (answer.status !== 200) throw new Error(`revoke key: HTTP ${answer.status} ${answer.text}`);
  return answer.body;
}

export async function getKey(adminUrl: string, id: string): Promise<KeyView> {
  const answer = await adminCall<KeyView>(adminUrl, "GET", `/v1/keys/${id}`);
  if (answer.status !== 200) throw new Error(`get key: HTTP ${answer.status} ${answer.text}`);
  return answer.body;
}

export interface ProxyAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body exactly as received. */
  text: string;
}

/**
 * One request through the proxy on a fresh connection. `key` becomes
 * `Authorization: Bearer <key>`; `headers` may hold arrays to send a header
 * several times.
 */
export async function proxyRequest(
  port: number,
  path: string,
  options: {
    key?: string;
    method?: string;
    headers?: Record<string, string | string[]>;
    body?: string;
  } = {},
): Promise<ProxyAnswer> {
  const headers: Record<string, string | string[]> = { ...options.headers };
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
  const result = await send(port, {
    method: options.method ?? "GET",
    path,
    headers,
    body: options.body,
  });
  return { status: result.status, headers: result.headers, text: result.body.toString("utf8") };
}

/** Status of a request with `key` as a Bearer credential. */
export async function statusWith(port: number, path: string, key: string): Promise<number> {
  return (await proxyRequest(port, path, { key })).status;
}

/** Polls `check` every `intervalMs` until it returns true; rejects with `what` after `timeoutMs`. */
export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  { timeoutMs = 5_000, intervalMs = 50 } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A `store:` section for the Redis store under `namespace`. */
export function redisStoreYaml(url: string, namespace: string, commandTimeoutMs = 200): string {
  return `store:
  type: redis
  redis: { url: "${url}", namespace: "${namespace}", command_timeout_ms: ${commandTimeoutMs} }
`;
}
