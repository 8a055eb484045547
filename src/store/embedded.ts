/**
 * The embedded key store: records in memory, persisted to one JSON file.
 *
 * Every write that changes a key (create, update, delete) is on disk before
 * its promise resolves: the file is written to a temporary sibling, fsynced,
 * renamed over the old one and the directory fsynced, so a crash leaves the
 * old or the new file, never a torn one. Last-used batches are persisted the
 * same way. Writes are serialized through one queue.
 *
 * One process owns the file: a lock file holding the owner's pid makes a
 * second instance refuse to start, because the embedded store cannot be
 * shared (use the Redis store for several instances).
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { constants } from "node:fs";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import {
  cursorOf,
  type KeyEvent,
  type KeyFilter,
  type KeyPage,
  type KeyPatch,
  type KeyRecord,
  lastDays,
  matchesFilter,
  type Touch,
  type UsageDay,
  utcDay,
} from "../keys/record.js";
import type { KeyStore } from "./key-store.js";

interface FileShape {
  version: 1;
  keys: KeyRecord[];
  /** id → { "YYYY-MM-DD": requests } */
  usage: Record<string, Record<string, number>>;
}

export class EmbeddedStoreLockedError extends Error {}

export class EmbeddedKeyStore implements KeyStore {
  readonly kind = "embedded" as const;
  private readonly byHash = new Map<string, KeyRecord>();
  private readonly byId = new Map<string, KeyRecord>();
  private readonly usageById = new Map<string, Record<string, number>>();
  private readonly events = new EventEmitter();
  private writeQueue: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly file: string,
    private readonly lockFile: string,
  ) {}

  /** Opens (or creates) the store file and takes its lock. */
  static async open(file: string): Promise<EmbeddedKeyStore> {
    await mkdir(dirname(file), { recursive: true });
    const lockFile = `${file}.lock`;
    await acquireLock(lockFile);
    const store = new EmbeddedKeyStore(file, lockFile);
    try {
      await store.load();
    } catch (error) {
      await rm(lockFile, { force: true });
      throw error;
    }
    return store;
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    const data = JSON.parse(text) as FileShape;
    if (data.version !== 1)
      throw new Error(`${this.file}: unsupported store version ${String(data.version)}`);
    for (const record of data.keys) this.index(record);
    for (const [id, days] of Object.entries(data.usage ?? {})) this.usageById.set(id, days);
  }

  private index(record: KeyRecord): void {
    this.byHash.set(record.hash, record);
    this.byId.set(record.id, record);
  }

  async getByHash(hash: string): Promise<KeyRecord | undefined> {
    return this.byHash.get(hash);
  }

  async getById(id: string): Promise<KeyRecord | undefined> {
    return this.byId.get(id);
  }

  async create(record: KeyRecord): Promise<boolean> {
    if (this.byId.has(record.id) || this.byHash.has(record.hash)) return false;
    this.index(record);
    try {
      await this.persist();
    } catch (error) {
      // Not durable, so not created: a key shown to the user must survive a restart.
      this.byId.delete(record.id);
      this.byHash.delete(record.hash);
      throw error;
    }
    return true;
  }

  async update(id: string, patch: KeyPatch): Promise<KeyRecord | undefined> {
    const current = this.byId.get(id);
    if (!current) return undefined;
    // status, label and plan cannot be removed: undefined there means "unchanged" (as in the Redis store).
    const next: KeyRecord = {
      ...current,
      ...patch,
      status: patch.status ?? current.status,
      label: patch.label ?? current.label,
      plan: patch.plan ?? current.plan,
    };
    this.index(next);
    await this.persist();
    return next;
  }

  async delete(id: string): Promise<KeyRecord | undefined> {
    const current = this.byId.get(id);
    if (!current) return undefined;
    this.byId.delete(id);
    this.byHash.delete(current.hash);
    this.usageById.delete(id);
    await this.persist();
    return current;
  }

  async list(filter: KeyFilter, limit: number, cursor?: string): Promise<KeyPage> {
    const ordered = [...this.byId.values()].sort(byCreation);
    const start = cursor === undefined ? 0 : ordered.findIndex((r) => cursorOf(r) > cursor);
    const items: KeyRecord[] = [];
    if (start === -1) return { items, nextCursor: undefined };
    let i = start;
    for (; i < ordered.length && items.length < limit; i++) {
      const record = ordered[i] as KeyRecord;
      if (matchesFilter(record, filter)) items.push(record);
    }
    const more = ordered.slice(i).some((r) => matchesFilter(r, filter));
    const last = items[items.length - 1];
    return { items, nextCursor: more && last ? cursorOf(last) : undefined };
  }

  async touch(batch: readonly Touch[]): Promise<void> {
    let changed = false;
    for (const t of batch) {
      const current = this.byHash.get(t.hash);
      if (!current) continue;
      if ((current.lastUsedAt ?? 0) < t.lastUsedAt) this.index({ ...current, lastUsedAt: t.lastUsedAt });
      const days = this.usageById.get(current.id) ?? {};
      const day = utcDay(t.lastUsedAt);
      days[day] = (days[day] ?? 0) + t.count;
      this.usageById.set(current.id, days);
      changed = true;
    }
    if (changed) await this.persist();
  }

  async usage(id: string, days: number, now: number): Promise<UsageDay[]> {
    const counts = this.usageById.get(id) ?? {};
    return lastDays(days, now).map((date) => ({ date, requests: counts[date] ?? 0 }));
  }

  async publish(event: KeyEvent): Promise<void> {
    this.events.emit("event", event);
  }

  async subscribe(listener: (event: KeyEvent) => void): Promise<() => Promise<void>> {
    this.events.on("event", listener);
    return async () => {
      this.events.off("event", listener);
    };
  }

  async ping(): Promise<boolean> {
    return !this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeQueue;
    await rm(this.lockFile, { force: true });
  }

  /** Queues a snapshot write; resolves when this (or a later) snapshot is durable. */
  private persist(): Promise<void> {
    const snapshot: FileShape = {
      version: 1,
      keys: [...this.byId.values()],
      usage: Object.fromEntries(this.usageById),
    };
    const write = this.writeQueue.then(() => writeAtomically(this.file, `${JSON.stringify(snapshot)}\n`));
    this.writeQueue = write.catch(() => {});
    return write;
  }
}

function byCreation(a: KeyRecord, b: KeyRecord): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

async function writeAtomically(file: string, content: string): Promise<void> {
  const temporary = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(temporary, constants.O_CREAT | constants.O_WRONLY | constants.O_TRUNC, 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  const directory = await open(dirname(file), constants.O_RDONLY);
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/** Creates `lockFile` with our pid; a lock left by a dead process is taken over. */
async function acquireLock(lockFile: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lockFile, String(process.pid), { flag: "wx", mode: 0o600 });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number((await readFile(lockFile, "utf8").catch(() => "")).trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new EmbeddedStoreLockedError(
          `embedded store ${lockFile.slice(0, -5)} is in use by process ${owner}; ` +
            "the embedded store serves one instance only: use store.type redis to run several",
        );
      }
      await rm(lockFile, { force: true });
    }
  }
  throw new EmbeddedStoreLockedError(`could not take the lock ${lockFile}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
