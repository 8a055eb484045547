/**
 * What only the embedded store promises: durability across a restart, one owner per file, no full
 * key on disk, and atomic rewrites that leave no temporary files behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { KeyRecord } from "../../src/keys/record.js";
import { EmbeddedKeyStore, EmbeddedStoreLockedError } from "../../src/store/embedded.js";
import { DAY, FULL_KEY_PATTERN, issue, makeRecord, T0, tempDir } from "./fixtures.js";

let dir: string;
let remove: () => Promise<void>;
let file: string;
const opened: EmbeddedKeyStore[] = [];
const children: ChildProcess[] = [];

async function open(): Promise<EmbeddedKeyStore> {
  const store = await EmbeddedKeyStore.open(file);
  opened.push(store);
  return store;
}

/** A live process that is not us: `sleep 30`, killed after the test. */
async function liveProcess(): Promise<number> {
  const child = spawn("sleep", ["30"], { stdio: "ignore" });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", () => resolve());
    child.once("error", reject);
  });
  return child.pid as number;
}

/** Writes the lock file as another process would have left it. */
async function writeLock(content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(`${file}.lock`, content);
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn("true", [], { stdio: "ignore" });
  const pid = child.pid as number;
  await new Promise((resolve) => child.once("exit", resolve));
  return pid;
}

beforeEach(async () => {
  ({ dir, remove } = await tempDir());
  file = path.join(dir, "data", "keys.json");
});

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  for (const child of children.splice(0)) child.kill("SIGKILL");
  await remove();
});

describe("embedded store: durability", () => {
  it("restores every record, change and usage after a reopen", async () => {
    const first = await open();
    const full = makeRecord({ expiresAt: T0 + DAY, metadata: { team: "a" }, rotatedTo: "key_x" });
    const plain = makeRecord();
    const updated = makeRecord({ expiresAt: T0 + DAY, metadata: { b: "2" } });
    const deleted = makeRecord();
    for (const r of [full, plain, updated, deleted]) expect(await first.create(r)).toBe(true);
    await first.update(updated.id, {
      label: "renamed",
      status: "revoked",
      expiresAt: undefined,
      metadata: undefined,
    });
    await first.delete(deleted.id);
    await first.touch([
      { id: plain.id, hash: plain.hash, lastUsedAt: T0 - DAY, count: 2 },
      { id: plain.id, hash: plain.hash, lastUsedAt: T0, count: 5 },
    ]);
    await first.close();

    const second = await open();
    const expected: KeyRecord[] = [
      full,
      { ...plain, lastUsedAt: T0 },
      { ...updated, label: "renamed", status: "revoked", expiresAt: undefined, metadata: undefined },
    ];
    expect((await second.list({}, 100)).items).toEqual(expected);
    for (const r of expected) {
      expect(await second.getByHash(r.hash)).toEqual(r);
      expect(await second.getById(r.id)).toEqual(r);
    }
    expect(await second.getById(deleted.id)).toBeUndefined();
    expect(await second.getByHash(deleted.hash)).toBeUndefined();
    expect(await second.usage(plain.id, 3, T0)).toEqual([
      { date: "2025-01-08", requests: 0 },
      { date: "2025-01-09", requests: 2 },
      { date: "2025-01-10", requests: 5 },
    ]);
  });

  it("has everything on disk as soon as a write resolves, even without close", async () => {
    const store = await open();
    const records = Array.from({ length: 20 }, (_, i) => makeRecord({ createdAt: T0 + i }));
    // Concurrent writes are serialized; each resolves once a snapshot holding it is durable.
    await Promise.all(records.map((r) => store.create(r)));
    const onDisk = JSON.parse(await readFile(file, "utf8")) as { version: number; keys: KeyRecord[] };
    expect(onDisk.version).toBe(1);
    expect(onDisk.keys.map((k) => k.id).sort()).toEqual(records.map((r) => r.id).sort());
  });

  it("starts empty when the file does not exist yet, creating its directory", async () => {
    const store = await open();
    expect(await store.list({}, 10)).toEqual({ items: [], nextCursor: undefined });
    await store.create(makeRecord());
    expect((await stat(file)).isFile()).toBe(true);
  });
});

describe("embedded store: one owner per file", () => {
  it("refuses a file whose lock is held by another live process", async () => {
    const pid = await liveProcess();
    await writeLock(String(pid));
    const error = await EmbeddedKeyStore.open(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EmbeddedStoreLockedError);
    expect((error as Error).message).toContain(String(pid));
    // The refused attempt leaves the owner's lock alone.
    expect((await readFile(`${file}.lock`, "utf8")).trim()).toBe(String(pid));
  });

  it("takes over a lock left by a dead process", async () => {
    const pid = await deadPid();
    await writeLock(String(pid));
    const store = await open();
    expect(await store.ping()).toBe(true);
    expect((await readFile(`${file}.lock`, "utf8")).trim()).toBe(String(process.pid));
  });

  it("takes over an empty or garbled lock file", async () => {
    await writeLock("not a pid");
    const store = await open();
    expect(await store.ping()).toBe(true);
  });

  it("holds a lock with its pid while open and releases it on close", async () => {
    const store = await open();
    expect((await readFile(`${file}.lock`, "utf8")).trim()).toBe(String(process.pid));
    await store.close();
    expect(await readdir(path.dirname(file))).not.toContain("keys.json.lock");
    expect(await store.ping()).toBe(false);
  });
});

describe("embedded store: what is on disk", () => {
  it("never contains a full key, only hashes", async () => {
    const store = await open();
    const issued = Array.from({ length: 10 }, () => issue({ metadata: { note: "x" } }));
    for (const { record } of issued) expect(await store.create(record)).toBe(true);
    await store.touch(issued.map(({ record }) => ({ ...record, lastUsedAt: T0, count: 1 })));
    await store.update(issued[0]?.record.id as string, { label: "changed" });
    await store.delete(issued[1]?.record.id as string);
    await store.close();

    const files = await readdir(path.dirname(file));
    for (const name of files) {
      const text = await readFile(path.join(path.dirname(file), name), "utf8");
      expect(text).not.toMatch(FULL_KEY_PATTERN);
      for (const { key } of issued) expect(text).not.toContain(key);
    }
    const text = await readFile(file, "utf8");
    for (const { record } of issued.slice(2)) expect(text).toContain(record.hash);
  });

  it("leaves no temporary file behind after many writes", async () => {
    const store = await open();
    const records = Array.from({ length: 30 }, () => makeRecord());
    await Promise.all(records.map((r) => store.create(r)));
    await Promise.all(records.slice(0, 10).map((r) => store.update(r.id, { status: "revoked" })));
    await Promise.all(records.slice(10, 20).map((r) => store.delete(r.id)));
    await store.touch(records.slice(20).map((r) => ({ id: r.id, hash: r.hash, lastUsedAt: T0, count: 1 })));
    const files = await readdir(path.dirname(file));
    expect(files.filter((name) => name.endsWith(".tmp"))).toEqual([]);
    expect(files.sort()).toEqual(["keys.json", "keys.json.lock"]);
    await store.close();
    expect(await readdir(path.dirname(file))).toEqual(["keys.json"]);
    // And the last snapshot is complete, valid JSON.
    const onDisk = JSON.parse(await readFile(file, "utf8")) as { keys: KeyRecord[] };
    expect(onDisk.keys).toHaveLength(20);
  });

  it("is readable by its owner only", async () => {
    const store = await open();
    await store.create(makeRecord());
    expect((await stat(file)).mode & 0o077).toBe(0);
  });
});
