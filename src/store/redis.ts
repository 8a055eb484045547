/**
 * The Redis key store (ioredis, standalone). Data model (`<ns>` is the
 * configured namespace, e.g. `keygate:`):
 *
 *   <ns>key:<sha256>   HASH   id, prefix, label, plan, status, created_at,
 *                             last_used_at, expires_at, metadata (JSON), rotated_to,
 *                             limits (JSON: the key's own rate limits)
 *   <ns>ids            HASH   id → sha256, for admin operations by id
 *   <ns>created        ZSET   "<created_at, 15 digits>:<id>" (score 0), paged with ZRANGEBYLEX
 *   <ns>usage:<id>     HASH   UTC day → successful requests (kept 400 days)
 *   <ns>events         pub/sub channel of KeyEvent JSON (revoke / delete / rotate)
 *
 * Multi-key changes are Lua scripts, so a record and its indexes never
 * disagree. Commands have a time budget (`commandTimeout`) and no offline
 * queue: while Redis is unreachable every call fails at once with
 * StoreUnavailableError instead of queueing without bound.
 */
import { Redis, type RedisOptions } from "ioredis";
import type { KeyEvent, KeyFilter, KeyPage, KeyPatch, KeyRecord, Touch, UsageDay } from "../keys/record.js";
import { cursorOf, lastDays, matchesFilter, utcDay } from "../keys/record.js";
import type { CircuitBreaker } from "./breaker.js";
import { type KeyStore, StoreUnavailableError } from "./key-store.js";

export interface RedisStoreOptions {
  url: string;
  namespace: string;
  /** Budget of one data-plane command (key lookup, rate limit), ms. */
  commandTimeoutMs: number;
  /** Budget of one admin command (listing, import), ms; 2000 when absent. */
  adminTimeoutMs?: number;
  connectTimeoutMs: number;
  /** Guards request-path calls; shared with the limiter. None: calls always go to Redis. */
  breaker?: CircuitBreaker;
}

const USAGE_TTL_SECONDS = 400 * 86_400;

const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
return 1`;

// KEYS: ids; ARGV: ns, id, n, then n arguments (field/value pairs) to set, then fields to delete.
// A count, not a separator: a value such as a label may be any string, "--" included.
const UPDATE = `
local hash = redis.call('HGET', KEYS[1], ARGV[2])
if not hash then return nil end
local key = ARGV[1] .. 'key:' .. hash
local n = tonumber(ARGV[3])
if n > 0 then redis.call('HSET', key, unpack(ARGV, 4, 3 + n)) end
for j = 4 + n, #ARGV do redis.call('HDEL', key, ARGV[j]) end
local fields = redis.call('HGETALL', key)
fields[#fields + 1] = 'hash'
fields[#fields + 1] = hash
return fields`;

// KEYS: ids, created; ARGV: ns, id
const DELETE = `
local hash = redis.call('HGET', KEYS[1], ARGV[2])
if not hash then return nil end
local key = ARGV[1] .. 'key:' .. hash
local fields = redis.call('HGETALL', key)
local created = redis.call('HGET', key, 'created_at')
redis.call('DEL', key, ARGV[1] .. 'usage:' .. ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[2])
if created then redis.call('ZREM', KEYS[2], string.rep('0', 15 - #created) .. created .. ':' .. ARGV[2]) end
fields[#fields + 1] = 'hash'
fields[#fields + 1] = hash
return fields`;

// KEYS: key:<hash>, usage:<id>; ARGV: last_used_at, day, count, ttl
const TOUCH = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local previous = tonumber(redis.call('HGET', KEYS[1], 'last_used_at') or '0')
if tonumber(ARGV[1]) > previous then redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1]) end
redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1`;

type ScriptClient = Redis & {
  keygateCreate(...args: (string | number)[]): Promise<number>;
  keygateUpdate(...args: (string | number)[]): Promise<string[] | null>;
  keygateDelete(...args: (string | number)[]): Promise<string[] | null>;
  keygateTouch(...args: (string | number)[]): Promise<number>;
};

/** ioredis options shared by every keygate connection: fail fast, never queue while down. */
export function redisOptions(
  options: Pick<RedisStoreOptions, "commandTimeoutMs" | "connectTimeoutMs">,
): RedisOptions {
  return {
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: options.connectTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
    lazyConnect: false,
  };
}

export class RedisKeyStore implements KeyStore {
  readonly kind = "redis" as const;
  /** Admin operations: a longer time budget, never behind the breaker. */
  private readonly client: ScriptClient;
  /** Request-path operations (lookup, last-used, rate limit): the short budget and the breaker. */
  private readonly fast: ScriptClient;
  private readonly subscribers = new Set<Redis>();
  private readonly ns: string;
  /**
   * Pending until the first connection attempt ends (ready, or failed). Calls made meanwhile wait
   * for it (at most connectTimeoutMs) instead of failing: without an offline queue, a store used
   * right after it was opened would otherwise refuse everything until the socket is up.
   */
  private firstConnection: Promise<void> | undefined;

  constructor(private readonly options: RedisStoreOptions) {
    this.ns = options.namespace;
    this.fast = connect(options.url, redisOptions(options));
    this.client = connect(
      options.url,
      redisOptions({ ...options, commandTimeoutMs: options.adminTimeoutMs ?? 2_000 }),
    );
    const clients = [this.fast, this.client];
    this.firstConnection = Promise.all(clients.map(firstAttempt)).then(() => {
      this.firstConnection = undefined;
    });
  }

  /** The request-path connection, shared with the rate limiter. */
  get connection(): Redis {
    return this.fast;
  }

  async getByHash(hash: string): Promise<KeyRecord | undefined> {
    const lookup = () => this.call(() => this.fast.hgetall(`${this.ns}key:${hash}`));
    const fields = await (this.options.breaker ? this.options.breaker.run(lookup) : lookup());
    return fromHash(hash, fields);
  }

  async getById(id: string): Promise<KeyRecord | undefined> {
    const hash = await this.call(() => this.client.hget(`${this.ns}ids`, id));
    return hash ? this.getByHash(hash) : undefined;
  }

  async create(record: KeyRecord): Promise<boolean> {
    const created = await this.call(() =>
      this.client.keygateCreate(
        `${this.ns}key:${record.hash}`,
        `${this.ns}ids`,
        `${this.ns}created`,
        record.id,
        record.hash,
        cursorOf(record),
        ...toFields(record),
      ),
    );
    return created === 1;
  }

  async update(id: string, patch: KeyPatch): Promise<KeyRecord | undefined> {
    const set: string[] = [];
    const unset: string[] = [];
    for (const [field, value] of Object.entries(patchFields(patch))) {
      if (value === undefined) unset.push(field);
      else set.push(field, value);
    }
    const reply = await this.call(() =>
      this.client.keygateUpdate(`${this.ns}ids`, this.ns, id, set.length, ...set, ...unset),
    );
    if (!reply) return undefined;
    const fields = pairs(reply);
    return fromHash(fields.hash ?? "", fields);
  }

  async delete(id: string): Promise<KeyRecord | undefined> {
    const reply = await this.call(() =>
      this.client.keygateDelete(`${this.ns}ids`, `${this.ns}created`, this.ns, id),
    );
    if (!reply) return undefined;
    const fields = pairs(reply);
    return fromHash(fields.hash ?? "", fields);
  }

  async list(filter: KeyFilter, limit: number, cursor?: string): Promise<KeyPage> {
    const items: KeyRecord[] = [];
    let from = cursor === undefined ? "-" : `(${cursor}`;
    const batch = Math.max(limit, 100);
    // Filters apply after reading, so keep reading until the page is full or the index ends.
    for (;;) {
      const members = await this.call(() =>
        this.client.zrangebylex(`${this.ns}created`, from, "+", "LIMIT", 0, batch + 1),
      );
      const slice = members.slice(0, batch);
      const ids = slice.map((m) => m.slice(m.indexOf(":") + 1));
      const records = await this.loadMany(ids);
      for (let i = 0; i < records.length; i++) {
        const record = records[i];
        if (!record || !matchesFilter(record, filter)) continue;
        if (items.length === limit)
          return { items, nextCursor: cursorOf(items[items.length - 1] as KeyRecord) };
        items.push(record);
      }
      if (members.length <= batch) return { items, nextCursor: undefined };
      from = `(${slice[slice.length - 1]}`;
    }
  }

  private async loadMany(ids: readonly string[]): Promise<(KeyRecord | undefined)[]> {
    if (ids.length === 0) return [];
    const hashes = await this.call(() => this.client.hmget(`${this.ns}ids`, ...ids));
    const pipeline = this.client.pipeline();
    for (const hash of hashes) pipeline.hgetall(`${this.ns}key:${hash ?? "missing"}`);
    const replies = failOnError((await this.call(() => pipeline.exec())) ?? []);
    return replies.map(([, fields], i) => fromHash(hashes[i] ?? "", fields as Record<string, string>));
  }

  async touch(batch: readonly Touch[]): Promise<void> {
    if (batch.length === 0) return;
    const pipeline = this.fast.pipeline() as unknown as ScriptClient;
    for (const t of batch) {
      pipeline.keygateTouch(
        `${this.ns}key:${t.hash}`,
        `${this.ns}usage:${t.id}`,
        t.lastUsedAt,
        utcDay(t.lastUsedAt),
        t.count,
        USAGE_TTL_SECONDS,
      );
    }
    // A pipeline resolves even when its commands fail (e.g. Redis down): each reply carries its error.
    failOnError((await this.call(() => (pipeline as unknown as ReturnType<Redis["pipeline"]>).exec())) ?? []);
  }

  async usage(id: string, days: number, now: number): Promise<UsageDay[]> {
    const dates = lastDays(days, now);
    const counts = await this.call(() => this.client.hmget(`${this.ns}usage:${id}`, ...dates));
    return dates.map((date, i) => ({ date, requests: Number(counts[i] ?? 0) }));
  }

  async publish(event: KeyEvent): Promise<void> {
    await this.call(() => this.client.publish(`${this.ns}events`, JSON.stringify(event)));
  }

  async subscribe(listener: (event: KeyEvent) => void, onGap: () => void): Promise<() => Promise<void>> {
    const channel = `${this.ns}events`;
    // A subscribed connection cannot run other commands: it gets its own, with an offline
    // queue so the SUBSCRIBE is replayed when it reconnects.
    const subscriber = new Redis(this.options.url, {
      ...redisOptions(this.options),
      commandTimeout: undefined,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
    });
    this.subscribers.add(subscriber);
    let active = true;
    subscriber.on("error", () => {});
    let connectedBefore = false;
    subscriber.on("ready", () => {
      // Anything published while we were away is lost: callers drop their caches.
      if (connectedBefore) onGap();
      connectedBefore = true;
    });
    subscriber.on("message", (from: string, message: string) => {
      // disconnect() only half-closes the socket: messages already on their way still arrive.
      if (!active || from !== channel) return;
      try {
        listener(JSON.parse(message) as KeyEvent);
      } catch {
        onGap();
      }
    });
    // While Redis is down the SUBSCRIBE waits in the offline queue: wait for it at most
    // connectTimeoutMs, then return anyway. When it takes effect later, events published meanwhile
    // were missed, so the caller is told through onGap.
    let late = false;
    let timer: NodeJS.Timeout | undefined;
    const confirmed = await Promise.race([
      subscriber.subscribe(channel).then(
        () => {
          if (late && active) onGap();
          return true;
        },
        () => false,
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), this.options.connectTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!confirmed) late = true;
    return async () => {
      active = false;
      this.subscribers.delete(subscriber);
      subscriber.disconnect();
    };
  }

  async ping(): Promise<boolean> {
    try {
      await this.untilFirstConnection();
      return (await this.fast.ping()) === "PONG";
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    for (const subscriber of this.subscribers) {
      subscriber.removeAllListeners("message");
      subscriber.disconnect();
    }
    this.subscribers.clear();
    await Promise.all([this.client, this.fast].map((c) => c.quit().catch(() => c.disconnect())));
  }

  /** Runs one call, turning every Redis failure into StoreUnavailableError. */
  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      await this.untilFirstConnection();
      return await operation();
    } catch (error) {
      throw new StoreUnavailableError(`redis: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Waits (at most connectTimeoutMs) while the very first connection attempt is under way. */
  private async untilFirstConnection(): Promise<void> {
    const first = this.firstConnection;
    if (!first) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      first,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.connectTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

/** Resolves when a client's first connection attempt ends, successfully or not. */
function firstAttempt(client: Redis): Promise<void> {
  return new Promise<void>((resolve) => {
    const settle = () => {
      for (const event of ["ready", "close", "end"]) client.off(event, settle);
      resolve();
    };
    for (const event of ["ready", "close", "end"]) client.once(event, settle);
  });
}

function connect(url: string, options: RedisOptions): ScriptClient {
  const client = new Redis(url, options);
  // Errors surface through the failing calls; the connection retries on its own.
  client.on("error", () => {});
  client.defineCommand("keygateCreate", { numberOfKeys: 3, lua: CREATE });
  client.defineCommand("keygateUpdate", { numberOfKeys: 1, lua: UPDATE });
  client.defineCommand("keygateDelete", { numberOfKeys: 2, lua: DELETE });
  client.defineCommand("keygateTouch", { numberOfKeys: 2, lua: TOUCH });
  return client as ScriptClient;
}

/** The replies of a pipeline, or StoreUnavailableError for the first command that failed. */
function failOnError<T>(replies: [Error | null, T][]): [Error | null, T][] {
  const failed = replies.find(([error]) => error);
  if (failed?.[0]) throw new StoreUnavailableError(`redis: ${failed[0].message}`, { cause: failed[0] });
  return replies;
}

function toFields(record: KeyRecord): string[] {
  const fields: string[] = [];
  for (const [field, value] of Object.entries({
    id: record.id,
    prefix: record.prefix,
    label: record.label,
    plan: record.plan,
    status: record.status,
    created_at: String(record.createdAt),
    ...patchFields(record),
    last_used_at: record.lastUsedAt === undefined ? undefined : String(record.lastUsedAt),
  })) {
    if (value !== undefined) fields.push(field, value);
  }
  return fields;
}

/** Storage fields for a patch; `undefined` means "remove this field". */
function patchFields(patch: KeyPatch): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (patch.status !== undefined) out.status = patch.status;
  if (patch.label !== undefined) out.label = patch.label;
  if (patch.plan !== undefined) out.plan = patch.plan;
  if ("expiresAt" in patch)
    out.expires_at = patch.expiresAt === undefined ? undefined : String(patch.expiresAt);
  if ("metadata" in patch)
    out.metadata = patch.metadata === undefined ? undefined : JSON.stringify(patch.metadata);
  if ("rotatedTo" in patch) out.rotated_to = patch.rotatedTo;
  if ("limits" in patch) out.limits = patch.limits === undefined ? undefined : JSON.stringify(patch.limits);
  return out;
}

function fromHash(hash: string, fields: Record<string, string> | undefined): KeyRecord | undefined {
  // A hash without an id is not a record (e.g. a key deleted while a write was in flight).
  if (!fields || fields.id === undefined) return undefined;
  return {
    id: fields.id,
    hash,
    prefix: fields.prefix ?? "",
    label: fields.label ?? "",
    plan: fields.plan ?? "",
    status: fields.status === "active" ? "active" : "revoked",
    createdAt: Number(fields.created_at ?? 0),
    lastUsedAt: fields.last_used_at === undefined ? undefined : Number(fields.last_used_at),
    expiresAt: fields.expires_at === undefined ? undefined : Number(fields.expires_at),
    metadata:
      fields.metadata === undefined ? undefined : (JSON.parse(fields.metadata) as Record<string, string>),
    rotatedTo: fields.rotated_to,
    limits: fields.limits === undefined ? undefined : (JSON.parse(fields.limits) as KeyRecord["limits"]),
  };
}

function pairs(flat: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}
