/**
 * The key-management API on the admin listener, under /v1. Every call needs
 * `Authorization: Bearer <admin token>`; with no token configured the API is
 * off (404). Responses never contain a key's hash, and a full key only in the
 * answer to create and rotate. The OpenAPI document is served at
 * /v1/openapi.json (see openapi.ts).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { KeyRecord, KeyStatus } from "../keys/record.js";
import { type ImportEntry, type KeyService, KeyServiceError } from "../keys/service.js";
import { StoreUnavailableError } from "../store/key-store.js";
import { OPENAPI_DOCUMENT } from "./openapi.js";
import { json } from "./server.js";

const MAX_BODY_BYTES = 1_048_576;
const MAX_IMPORT_BODY_BYTES = 16 * 1_048_576;

export interface KeysApiOptions {
  /** The current key service (it is rebuilt when the configuration reloads). */
  service: () => KeyService;
  tokens: readonly string[];
  /** Notes an admin action in the log (never with a key or hash). */
  audit: (action: string, fields: Record<string, unknown>) => void;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Compares a presented token with every configured one in constant time. */
export function tokenMatcher(tokens: readonly string[]): (presented: string) => boolean {
  const digests = tokens.map((t) => createHash("sha256").update(t).digest());
  return (presented) => {
    const candidate = createHash("sha256").update(presented).digest();
    let ok = false;
    for (const digest of digests) ok = timingSafeEqual(digest, candidate) || ok;
    return ok;
  };
}

/** Public view of a record: everything but the hash. */
export function publicKey(record: KeyRecord): Record<string, unknown> {
  return {
    id: record.id,
    prefix: record.prefix,
    label: record.label,
    plan: record.plan,
    status: record.status,
    created_at: iso(record.createdAt),
    last_used_at: iso(record.lastUsedAt),
    expires_at: iso(record.expiresAt),
    metadata: record.metadata ?? {},
    limits: record.limits ?? {},
    rotated_to: record.rotatedTo ?? null,
  };
}

function iso(epochMs: number | undefined): string | null {
  return epochMs === undefined ? null : new Date(epochMs).toISOString();
}

export function createKeysApi(options: KeysApiOptions) {
  const isAdmin = tokenMatcher(options.tokens);
  const enabled = options.tokens.length > 0;
  const { audit } = options;

  /** Handles `path` under /v1; returns false when the path is not the API's. */
  return async function handleKeysApi(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    query: URLSearchParams,
  ) {
    if (!path.startsWith("/v1/")) return false;
    try {
      if (!enabled)
        throw new ApiError(404, "ADMIN_API_DISABLED", "the admin API is off: configure admin.tokens");
      const header = req.headers.authorization ?? "";
      const token = /^bearer /i.test(header) ? header.slice(7).trim() : "";
      if (!isAdmin(token)) {
        res.setHeader("www-authenticate", 'Bearer realm="keygate-admin"');
        throw new ApiError(401, "UNAUTHORIZED", "missing or wrong admin token");
      }
      await route(req, res, path, query);
    } catch (error) {
      sendApiError(res, error);
    }
    return true;
  };

  async function route(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) {
    const service = options.service();
    const method = req.method ?? "GET";
    if (path === "/v1/openapi.json" && method === "GET") return json(res, 200, OPENAPI_DOCUMENT);
    if (path === "/v1/keys" && method === "POST") {
      const body = await readJson(req, MAX_BODY_BYTES);
      const { key, record } = await service.create({
        label: body.label as string,
        plan: body.plan as string,
        expiresAt: parseTime(body.expires_at, "expires_at"),
        metadata: parseMetadata(body.metadata),
        limits: parseLimits(body.limits),
        format: typeof body.format === "string" ? body.format : undefined,
      });
      audit("key created", { key_id: record.id, plan: record.plan });
      return json(res, 201, { key, ...publicKey(record) });
    }
    if (path === "/v1/keys" && method === "GET") {
      const status = query.get("status") ?? undefined;
      if (status !== undefined && status !== "active" && status !== "revoked") {
        throw new ApiError(400, "INVALID_FILTER", "status must be active or revoked");
      }
      const page = await service.list(
        {
          prefix: query.get("prefix") ?? undefined,
          label: query.get("label") ?? undefined,
          plan: query.get("plan") ?? undefined,
          status: status as KeyStatus | undefined,
        },
        Number(query.get("limit") ?? 100) || 100,
        query.get("cursor") ?? undefined,
      );
      return json(res, 200, { items: page.items.map(publicKey), next_cursor: page.nextCursor ?? null });
    }
    if (path === "/v1/keys/import" && method === "POST") {
      const body = await readJson(req, MAX_IMPORT_BODY_BYTES);
      if (!Array.isArray(body.keys)) throw new ApiError(400, "INVALID_BODY", 'expected {"keys": [...]}');
      const result = await service.import((body.keys as unknown[]).map(toImportEntry));
      audit("keys imported", {
        imported: result.imported,
        skipped: result.skipped,
        failed: result.errors.length,
      });
      return json(res, 200, result);
    }
    const match = /^\/v1\/keys\/(key_[0-9a-f]{24})(\/[a-z]+)?$/.exec(path);
    if (!match) throw new ApiError(404, "NOT_FOUND", "unknown admin endpoint");
    const id = match[1] as string;
    const action = match[2];
    if (action === undefined && method === "GET") return json(res, 200, publicKey(await service.get(id)));
    if (action === undefined && method === "DELETE") {
      await service.delete(id);
      audit("key deleted", { key_id: id });
      return json(res, 200, { id, deleted: true });
    }
    if (action === "/revoke" && method === "POST") {
      const record = await service.revoke(id);
      audit("key revoked", { key_id: id });
      return json(res, 200, publicKey(record));
    }
    if (action === "/rotate" && method === "POST") {
      const body = await readJson(req, MAX_BODY_BYTES);
      const grace = body.grace_seconds ?? 0;
      if (typeof grace !== "number" || !Number.isInteger(grace) || grace < 0 || grace > 30 * 86_400) {
        throw new ApiError(400, "INVALID_GRACE", "grace_seconds must be an integer from 0 to 2592000");
      }
      const { key, record, previous } = await service.rotate(id, grace);
      audit("key rotated", { key_id: id, new_key_id: record.id, grace_seconds: grace });
      return json(res, 201, { key, ...publicKey(record), previous: publicKey(previous) });
    }
    if (action === "/usage" && method === "GET") {
      const days = Number(query.get("days") ?? 30) || 30;
      return json(res, 200, { id, days: await service.usage(id, days) });
    }
    throw new ApiError(405, "METHOD_NOT_ALLOWED", `${method} is not allowed on ${path}`);
  }
}

function sendApiError(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (error instanceof ApiError || error instanceof KeyServiceError) {
    json(res, error.status, { error: { code: error.code, message: error.message } });
  } else if (error instanceof StoreUnavailableError) {
    json(res, 503, { error: { code: "STORE_UNAVAILABLE", message: "the key store is unavailable" } });
  } else {
    json(res, 500, {
      error: { code: "INTERNAL_ERROR", message: (error as Error)?.message ?? "internal error" },
    });
  }
}

async function readJson(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ApiError(413, "BODY_TOO_LARGE", `request body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw new Error("not an object");
    return parsed as Record<string, unknown>;
  } catch {
    throw new ApiError(400, "INVALID_JSON", "request body must be a JSON object");
  }
}

function parseTime(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  const ms = typeof value === "string" ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new ApiError(400, "INVALID_TIME", `${field} must be an ISO 8601 date-time`);
  return ms;
}

function parseMetadata(value: unknown): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (
    typeof value !== "object" ||
    Array.isArray(value) ||
    Object.values(value).some((v) => typeof v !== "string")
  ) {
    throw new ApiError(400, "INVALID_METADATA", "metadata must be an object of strings");
  }
  return value as Record<string, string>;
}

const WINDOWS = new Set(["second", "minute", "hour", "day", "month"]);

/** `{"<rule>": {"minute": 20}}`: positive integer limits per window of a plan rule. */
function parseLimits(value: unknown): Record<string, Record<string, number>> | undefined {
  if (value === undefined || value === null) return undefined;
  const invalid = () =>
    new ApiError(400, "INVALID_LIMITS", 'limits must look like {"<rule>": {"minute": 20}}');
  if (typeof value !== "object" || Array.isArray(value)) throw invalid();
  for (const windows of Object.values(value)) {
    if (windows === null || typeof windows !== "object" || Array.isArray(windows)) throw invalid();
    for (const [window, limit] of Object.entries(windows)) {
      if (!WINDOWS.has(window) || !Number.isInteger(limit) || (limit as number) <= 0) throw invalid();
    }
  }
  return value as Record<string, Record<string, number>>;
}

function toImportEntry(raw: unknown, index: number): ImportEntry {
  if (raw === null || typeof raw !== "object")
    throw new ApiError(400, "INVALID_BODY", `keys[${index}] is not an object`);
  const entry = raw as Record<string, unknown>;
  return {
    hash: String(entry.hash ?? ""),
    prefix: String(entry.prefix ?? ""),
    label: entry.label as string,
    plan: entry.plan as string,
    status: entry.status === "revoked" ? "revoked" : "active",
    createdAt: parseTime(entry.created_at, `keys[${index}].created_at`),
    expiresAt: parseTime(entry.expires_at, `keys[${index}].expires_at`),
    metadata: parseMetadata(entry.metadata),
  };
}
