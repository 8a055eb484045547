import type { KeyEvent, KeyFilter, KeyPage, KeyPatch, KeyRecord, Touch, UsageDay } from "../keys/record.js";

/**
 * Where key records live. Implementations only do I/O; rules (formats,
 * expiry, plans) live in the key service and the pipeline. Every method may
 * reject with {@link StoreUnavailableError} when the backend cannot answer in
 * its time budget; none of them hangs.
 */
export interface KeyStore {
  readonly kind: "redis" | "embedded";
  /** The record for a key hash, or undefined. Hot path. */
  getByHash(hash: string): Promise<KeyRecord | undefined>;
  getById(id: string): Promise<KeyRecord | undefined>;
  /** Adds a record; false when its id or hash already exists (nothing written). */
  create(record: KeyRecord): Promise<boolean>;
  /** Changes some fields; the updated record, or undefined when the id is unknown. */
  update(id: string, patch: KeyPatch): Promise<KeyRecord | undefined>;
  /** Removes the record; the removed record, or undefined when the id is unknown. */
  delete(id: string): Promise<KeyRecord | undefined>;
  /** Records in creation order (oldest first), filtered, `limit` per page. */
  list(filter: KeyFilter, limit: number, cursor?: string): Promise<KeyPage>;
  /** Applies a batch of last-used times and usage counts; unknown keys are skipped. */
  touch(batch: readonly Touch[]): Promise<void>;
  /** Requests per UTC day for the last `days` days, oldest first. */
  usage(id: string, days: number, now: number): Promise<UsageDay[]>;
  /** Tells every instance (this one included) that a key changed. */
  publish(event: KeyEvent): Promise<void>;
  /**
   * Calls `listener` for each event from any instance. `onGap` is called when
   * events may have been missed (subscription re-established), so caches can
   * drop everything. Returns the unsubscribe function.
   */
  subscribe(listener: (event: KeyEvent) => void, onGap: () => void): Promise<() => Promise<void>>;
  /** True when the store answers now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** The store did not answer, or not within its time budget. Maps to 503. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}
