/**
 * Key lifecycle for the admin API: create (the full key is returned once and
 * never stored), list, show, revoke, delete, rotate, import already-hashed
 * keys, usage. Every change that can affect a cached key is broadcast so all
 * instances drop it at once.
 */
import { randomBytes } from "node:crypto";
import { type KeyStore, StoreUnavailableError } from "../store/key-store.js";
import { DISPLAY_PREFIX_LENGTH, displayPrefix, hashKey, type KeyFormat } from "./format.js";
import type { KeyEvent, KeyFilter, KeyPage, KeyRecord, UsageDay } from "./record.js";

/** A refused admin operation: HTTP status, stable code, message for the caller. */
export class KeyServiceError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "KeyServiceError";
  }
}

export interface CreateKeyInput {
  label: string;
  plan: string;
  /** Epoch ms. */
  expiresAt?: number;
  metadata?: Record<string, string>;
  /** The key's own limits: rule name → window → limit. */
  limits?: Record<string, Record<string, number>>;
  /** Format name; the configured default when absent. */
  format?: string;
}

export interface ImportEntry {
  hash: string;
  prefix: string;
  label: string;
  plan: string;
  status?: "active" | "revoked";
  createdAt?: number;
  expiresAt?: number;
  metadata?: Record<string, string>;
}

export interface ImportResult {
  imported: number;
  skipped: number;
  errors: { index: number; message: string }[];
}

export interface KeyServiceOptions {
  formats: readonly KeyFormat[];
  /** Name of the format new keys get. */
  generateFormat: string;
  planExists: (plan: string) => boolean;
  now: () => number;
  onPublishError?: (error: unknown, event: KeyEvent) => void;
}

const MAX_LABEL = 200;
const HASH_PATTERN = /^[0-9a-f]{64}$/;

export function newKeyId(): string {
  return `key_${randomBytes(12).toString("hex")}`;
}

export class KeyService {
  constructor(
    private readonly store: KeyStore,
    private readonly options: KeyServiceOptions,
  ) {}

  async create(input: CreateKeyInput): Promise<{ key: string; record: KeyRecord }> {
    this.checkLabelAndPlan(input.label, input.plan);
    const formatName = input.format ?? this.options.generateFormat;
    const format = this.options.formats.find((f) => f.name === formatName);
    if (!format) throw new KeyServiceError(400, "UNKNOWN_FORMAT", `unknown key format "${formatName}"`);
    const now = this.options.now();
    if (input.expiresAt !== undefined && input.expiresAt <= now) {
      throw new KeyServiceError(400, "INVALID_EXPIRY", "expires_at must be in the future");
    }
    for (;;) {
      const key = format.generate();
      const record: KeyRecord = {
        id: newKeyId(),
        hash: hashKey(key),
        prefix: displayPrefix(key),
        label: input.label,
        plan: input.plan,
        status: "active",
        createdAt: now,
        lastUsedAt: undefined,
        expiresAt: input.expiresAt,
        metadata: input.metadata,
        rotatedTo: undefined,
        limits: input.limits,
      };
      // A collision of 128+ random bits will not happen, but a false return must never be ignored.
      if (await this.store.create(record)) return { key, record };
    }
  }

  list(filter: KeyFilter, limit: number, cursor?: string): Promise<KeyPage> {
    return this.store.list(filter, Math.min(Math.max(limit, 1), 1000), cursor);
  }

  async get(id: string): Promise<KeyRecord> {
    const record = await this.store.getById(id);
    if (!record) throw notFound(id);
    return record;
  }

  async revoke(id: string): Promise<KeyRecord> {
    const record = await this.store.update(id, { status: "revoked" });
    if (!record) throw notFound(id);
    await this.broadcast({ type: "revoked", id, hash: record.hash });
    return record;
  }

  async delete(id: string): Promise<KeyRecord> {
    const record = await this.store.delete(id);
    if (!record) throw notFound(id);
    await this.broadcast({ type: "deleted", id, hash: record.hash });
    return record;
  }

  /**
   * Issues a new key with the old one's label, plan and metadata. The old key
   * keeps working for `graceSeconds` (0: revoked at once), then stops.
   */
  async rotate(
    id: string,
    graceSeconds: number,
  ): Promise<{ key: string; record: KeyRecord; previous: KeyRecord }> {
    const old = await this.get(id);
    if (old.status !== "active")
      throw new KeyServiceError(409, "KEY_REVOKED", "a revoked key cannot be rotated");
    const format = this.options.formats.find((f) => old.prefix.startsWith(f.prefix));
    const created = await this.create({
      label: old.label,
      plan: old.plan,
      expiresAt: old.expiresAt,
      metadata: old.metadata,
      limits: old.limits as Record<string, Record<string, number>> | undefined,
      format: format?.name,
    });
    const now = this.options.now();
    const patch =
      graceSeconds > 0
        ? {
            expiresAt: Math.min(old.expiresAt ?? Number.POSITIVE_INFINITY, now + graceSeconds * 1000),
            rotatedTo: created.record.id,
          }
        : { status: "revoked" as const, rotatedTo: created.record.id };
    const previous = await this.store.update(id, patch);
    if (!previous) throw notFound(id);
    await this.broadcast({ type: "rotated", id, hash: previous.hash });
    return { ...created, previous };
  }

  /** Adds keys hashed elsewhere (migration). Invalid entries are reported, the rest imported. */
  async import(entries: readonly ImportEntry[]): Promise<ImportResult> {
    const result: ImportResult = { imported: 0, skipped: 0, errors: [] };
    const now = this.options.now();
    for (const [index, entry] of entries.entries()) {
      try {
        if (!HASH_PATTERN.test(entry.hash))
          throw new Error("hash must be 64 lower-case hex characters (SHA-256)");
        if (entry.prefix.length === 0 || entry.prefix.length > DISPLAY_PREFIX_LENGTH) {
          throw new Error(`prefix must be 1 to ${DISPLAY_PREFIX_LENGTH} characters`);
        }
        this.checkLabelAndPlan(entry.label, entry.plan);
        const created = await this.store.create({
          id: newKeyId(),
          hash: entry.hash,
          prefix: entry.prefix,
          label: entry.label,
          plan: entry.plan,
          status: entry.status ?? "active",
          createdAt: entry.createdAt ?? now,
          lastUsedAt: undefined,
          expiresAt: entry.expiresAt,
          metadata: entry.metadata,
          rotatedTo: undefined,
        });
        if (created) {
          result.imported++;
          // The hash may sit in a negative cache from an earlier attempt.
          await this.broadcast({ type: "updated", id: "", hash: entry.hash });
        } else result.skipped++;
      } catch (error) {
        if (error instanceof StoreUnavailableError) throw error;
        result.errors.push({ index, message: (error as Error).message });
      }
    }
    return result;
  }

  async usage(id: string, days: number): Promise<UsageDay[]> {
    await this.get(id);
    return this.store.usage(id, Math.min(Math.max(days, 1), 400), this.options.now());
  }

  private checkLabelAndPlan(label: unknown, plan: unknown): void {
    if (typeof label !== "string" || label.trim() === "" || label.length > MAX_LABEL) {
      throw new KeyServiceError(400, "INVALID_LABEL", `label must be 1 to ${MAX_LABEL} characters`);
    }
    if (typeof plan !== "string" || !this.options.planExists(plan)) {
      throw new KeyServiceError(400, "UNKNOWN_PLAN", `unknown plan "${String(plan)}"`);
    }
  }

  /** Invalidation is best effort: when it fails, caches still drop the key within their TTL. */
  private async broadcast(event: KeyEvent): Promise<void> {
    try {
      await this.store.publish(event);
    } catch (error) {
      this.options.onPublishError?.(error, event);
    }
  }
}

function notFound(id: string): KeyServiceError {
  return new KeyServiceError(404, "KEY_NOT_FOUND", `no key with id "${id}"`);
}
