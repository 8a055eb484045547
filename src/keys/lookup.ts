/**
 * The data plane's view of the key store: a bounded LRU of records with a
 * TTL, a short negative cache for unknown hashes, and request coalescing so a
 * burst for one uncached key costs one store call.
 *
 * Invalidation events (revoke, delete, rotate) from any instance drop the
 * entry at once; without them an entry lives at most `ttlMs`. A lookup that
 * was in flight while any invalidation arrived is answered but not cached, so
 * a fill racing a revocation cannot put the revoked key back.
 */
import { LRUCache } from "lru-cache";
import type { KeyStore } from "../store/key-store.js";
import type { KeyRecord } from "./record.js";

export interface KeyCacheOptions {
  size: number;
  ttlMs: number;
  negativeTtlMs: number;
}

const UNKNOWN = Symbol("unknown key");
interface Entry {
  readonly value: KeyRecord | typeof UNKNOWN;
  /** The {@link KeyLookup.epoch} the entry was filled in; older entries are stale. */
  readonly epoch: number;
}

export class KeyLookup {
  private readonly cache: LRUCache<string, Entry>;
  private readonly pending = new Map<string, Promise<KeyRecord | undefined>>();
  /** Bumped by every invalidation; a fill started under an older value is not cached. */
  private generation = 0;
  /**
   * Bumped when invalidation events may have been missed (subscription gap).
   * Entries of an older epoch are checked with the store again; while the
   * store cannot answer, a stale record is still served until its TTL ends.
   */
  private epoch = 0;
  private unsubscribe: (() => Promise<void>) | undefined;

  constructor(
    private readonly store: KeyStore,
    private readonly options: KeyCacheOptions,
  ) {
    this.cache = new LRUCache<string, Entry>({
      max: options.size,
      ttl: options.ttlMs,
      updateAgeOnGet: false,
    });
  }

  /** Starts following invalidation events. */
  async start(): Promise<void> {
    this.unsubscribe = await this.store.subscribe(
      (event) => this.invalidate(event.hash),
      () => this.markStale(),
    );
  }

  async stop(): Promise<void> {
    await this.unsubscribe?.();
  }

  /**
   * The record for `hash`, or undefined when unknown. Synchronous on a cache
   * hit. Rejects with StoreUnavailableError when the store cannot answer
   * (unless a stale entry can stand in, see {@link epoch}).
   */
  find(hash: string): KeyRecord | undefined | Promise<KeyRecord | undefined> {
    const cached = this.cache.get(hash);
    if (cached !== undefined && cached.epoch === this.epoch)
      return cached.value === UNKNOWN ? undefined : cached.value;
    const inFlight = this.pending.get(hash);
    if (inFlight) return inFlight;
    const generation = this.generation;
    const epoch = this.epoch;
    const fill = this.store.getByHash(hash).then(
      (record) => {
        if (this.pending.get(hash) === fill) this.pending.delete(hash);
        if (generation === this.generation) {
          if (record) this.cache.set(hash, { value: record, epoch });
          else this.cache.set(hash, { value: UNKNOWN, epoch }, { ttl: this.options.negativeTtlMs });
        }
        return record;
      },
      (error: unknown) => {
        if (this.pending.get(hash) === fill) this.pending.delete(hash);
        const stale = this.cache.get(hash);
        if (stale !== undefined && stale.value !== UNKNOWN) return stale.value;
        throw error;
      },
    );
    this.pending.set(hash, fill);
    return fill;
  }

  /** The cached, current record for `hash`, without any store access. */
  peek(hash: string): KeyRecord | undefined {
    const cached = this.cache.peek(hash);
    return cached !== undefined && cached.epoch === this.epoch && cached.value !== UNKNOWN
      ? cached.value
      : undefined;
  }

  invalidate(hash: string): void {
    this.generation++;
    this.cache.delete(hash);
    // A lookup in flight may carry the old record; the next request must ask again.
    this.pending.delete(hash);
  }

  /** Drops every entry (e.g. after a reload changed what a record may mean). */
  clear(): void {
    this.generation++;
    this.cache.clear();
    this.pending.clear();
  }

  /** Events may have been missed: every entry must be checked again, but may stand in while the store is down. */
  markStale(): void {
    this.generation++;
    this.epoch++;
    this.pending.clear();
  }
}
