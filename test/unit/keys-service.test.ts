/**
 * KeyService over a real embedded store in a temporary directory (no Redis): the full key is
 * returned once and only its hash stored, inputs are validated, rotation and revocation write the
 * right fields and broadcast, imports report per-entry errors.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { compileKeyFormat, hashKey } from "../../src/keys/format.js";
import type { KeyEvent } from "../../src/keys/record.js";
import {
  type ImportEntry,
  KeyService,
  KeyServiceError,
  type KeyServiceOptions,
} from "../../src/keys/service.js";
import { EmbeddedKeyStore } from "../../src/store/embedded.js";
import { StoreUnavailableError } from "../../src/store/key-store.js";

const reelplus = compileKeyFormat({ name: "reelplus", prefix: "rp_", alphabet: "hex", length: 64 });
const gigareels = compileKeyFormat({
  name: "gigareels",
  prefix: "giga_",
  alphabet: "alphanumeric",
  length: 32,
});
const NOW = Date.UTC(2025, 0, 10, 12);

let dir: string;
let file: string;
let store: EmbeddedKeyStore;
let events: KeyEvent[];
let now: number;

function service(overrides: Partial<KeyServiceOptions> = {}): KeyService {
  return new KeyService(store, {
    formats: [reelplus, gigareels],
    generateFormat: "reelplus",
    planExists: (plan) => plan === "free" || plan === "pro",
    now: () => now,
    ...overrides,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "keygate-service-"));
  file = path.join(dir, "keys.json");
  store = await EmbeddedKeyStore.open(file);
  events = [];
  vi.spyOn(store, "publish").mockImplementation(async (event) => {
    events.push(event);
  });
  now = NOW;
});

afterEach(async () => {
  vi.restoreAllMocks();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function expectRefusal(promise: Promise<unknown>, status: number, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KeyServiceError);
  expect(error).toMatchObject({ status, code });
}

describe("KeyService.create", () => {
  it("returns a key of the default format whose SHA-256 is the stored hash", async () => {
    const keys = service();
    const { key, record } = await keys.create({ label: "mobile", plan: "pro", metadata: { team: "a" } });
    expect(reelplus.matches(key)).toBe(true);
    expect(record.hash).toBe(hashKey(key));
    expect(record.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(record.prefix).toBe(key.slice(0, 10));
    expect(record.id).toMatch(/^key_[0-9a-f]{24}$/);
    expect(record).toMatchObject({
      label: "mobile",
      plan: "pro",
      status: "active",
      createdAt: NOW,
      lastUsedAt: undefined,
      expiresAt: undefined,
      metadata: { team: "a" },
      rotatedTo: undefined,
    });
    expect(await store.getByHash(hashKey(key))).toEqual(record);
    // Only the hash reaches the disk.
    const onDisk = await readFile(file, "utf8");
    expect(onDisk).not.toContain(key);
    expect(onDisk).toContain(record.hash);
  });

  it("uses a requested format", async () => {
    const { key, record } = await service().create({ label: "x", plan: "free", format: "gigareels" });
    expect(gigareels.matches(key)).toBe(true);
    expect(record.hash).toBe(hashKey(key));
  });

  it("generates a different key every time", async () => {
    const keys = service();
    const made = await Promise.all(
      Array.from({ length: 20 }, () => keys.create({ label: "x", plan: "free" })),
    );
    expect(new Set(made.map((m) => m.key)).size).toBe(20);
    expect(new Set(made.map((m) => m.record.id)).size).toBe(20);
  });

  it("keeps a future expiry and refuses one in the past", async () => {
    const keys = service();
    const { record } = await keys.create({ label: "x", plan: "free", expiresAt: NOW + 1 });
    expect(record.expiresAt).toBe(NOW + 1);
    await expectRefusal(keys.create({ label: "x", plan: "free", expiresAt: NOW }), 400, "INVALID_EXPIRY");
  });

  it("refuses an invalid label, an unknown plan or format, and stores nothing", async () => {
    const keys = service();
    await expectRefusal(keys.create({ label: "", plan: "free" }), 400, "INVALID_LABEL");
    await expectRefusal(keys.create({ label: "   ", plan: "free" }), 400, "INVALID_LABEL");
    await expectRefusal(keys.create({ label: "x".repeat(201), plan: "free" }), 400, "INVALID_LABEL");
    await expectRefusal(keys.create({ label: 42 as unknown as string, plan: "free" }), 400, "INVALID_LABEL");
    await expectRefusal(keys.create({ label: "ok", plan: "gold" }), 400, "UNKNOWN_PLAN");
    await expectRefusal(keys.create({ label: "ok", plan: "free", format: "nope" }), 400, "UNKNOWN_FORMAT");
    expect((await store.list({}, 10)).items).toEqual([]);
    // 200 characters is fine.
    await expect(service().create({ label: "x".repeat(200), plan: "free" })).resolves.toBeDefined();
  });

  it("tries again with a new key when the store reports a collision", async () => {
    const create = vi.spyOn(store, "create").mockResolvedValueOnce(false);
    const { key, record } = await service().create({ label: "x", plan: "free" });
    expect(create).toHaveBeenCalledTimes(2);
    expect(await store.getByHash(hashKey(key))).toEqual(record);
  });
});

describe("KeyService.revoke and delete", () => {
  it("revoke sets the status and broadcasts", async () => {
    const keys = service();
    const { record } = await keys.create({ label: "x", plan: "free" });
    const revoked = await keys.revoke(record.id);
    expect(revoked).toEqual({ ...record, status: "revoked" });
    expect(await store.getById(record.id)).toEqual(revoked);
    expect(events).toEqual([{ type: "revoked", id: record.id, hash: record.hash }]);
  });

  it("delete removes the key and broadcasts", async () => {
    const keys = service();
    const { record } = await keys.create({ label: "x", plan: "free" });
    expect(await keys.delete(record.id)).toEqual(record);
    expect(await store.getById(record.id)).toBeUndefined();
    expect(events).toEqual([{ type: "deleted", id: record.id, hash: record.hash }]);
  });

  it("answers 404 for an unknown id and broadcasts nothing", async () => {
    const keys = service();
    await expectRefusal(keys.revoke("key_000000000000000000000000"), 404, "KEY_NOT_FOUND");
    await expectRefusal(keys.delete("key_000000000000000000000000"), 404, "KEY_NOT_FOUND");
    await expectRefusal(keys.get("key_000000000000000000000000"), 404, "KEY_NOT_FOUND");
    expect(events).toEqual([]);
  });

  it("still succeeds when the broadcast fails, and reports it", async () => {
    const onPublishError = vi.fn();
    const keys = service({ onPublishError });
    const { record } = await keys.create({ label: "x", plan: "free" });
    const failure = new StoreUnavailableError("down");
    vi.mocked(store.publish).mockRejectedValueOnce(failure);
    expect((await keys.revoke(record.id)).status).toBe("revoked");
    expect(onPublishError).toHaveBeenCalledWith(failure, {
      type: "revoked",
      id: record.id,
      hash: record.hash,
    });
  });
});

describe("KeyService.rotate", () => {
  it("with a grace period: a new key, the old one expires after the grace and points to it", async () => {
    const keys = service();
    const old = await keys.create({ label: "mobile", plan: "pro", metadata: { team: "a" } });
    now = NOW + 1_000;
    const { key, record, previous } = await keys.rotate(old.record.id, 3_600);
    expect(reelplus.matches(key)).toBe(true);
    expect(record.hash).toBe(hashKey(key));
    expect(record).toMatchObject({ label: "mobile", plan: "pro", metadata: { team: "a" }, status: "active" });
    expect(record.id).not.toBe(old.record.id);
    expect(previous).toEqual({
      ...old.record,
      expiresAt: NOW + 1_000 + 3_600_000,
      rotatedTo: record.id,
    });
    expect(previous.status).toBe("active");
    expect(await store.getById(old.record.id)).toEqual(previous);
    expect(await store.getById(record.id)).toEqual(record);
    expect(events).toEqual([{ type: "rotated", id: old.record.id, hash: old.record.hash }]);
  });

  it("with a grace period keeps an earlier expiry of the old key", async () => {
    const keys = service();
    const old = await keys.create({ label: "x", plan: "free", expiresAt: NOW + 60_000 });
    const { record, previous } = await keys.rotate(old.record.id, 3_600);
    expect(previous.expiresAt).toBe(NOW + 60_000);
    expect(record.expiresAt).toBe(NOW + 60_000); // the new key inherits the expiry
  });

  it("with 0 grace revokes the old key at once", async () => {
    const keys = service();
    const old = await keys.create({ label: "x", plan: "free" });
    const { record, previous } = await keys.rotate(old.record.id, 0);
    expect(previous).toEqual({ ...old.record, status: "revoked", rotatedTo: record.id });
    expect(await store.getById(old.record.id)).toEqual(previous);
    expect(events).toEqual([{ type: "rotated", id: old.record.id, hash: old.record.hash }]);
  });

  it("keeps the old key's format", async () => {
    const keys = service();
    const old = await keys.create({ label: "x", plan: "free", format: "gigareels" });
    const { key } = await keys.rotate(old.record.id, 0);
    expect(gigareels.matches(key)).toBe(true);
  });

  it("refuses a revoked or unknown key", async () => {
    const keys = service();
    const old = await keys.create({ label: "x", plan: "free" });
    await keys.revoke(old.record.id);
    events.length = 0;
    await expectRefusal(keys.rotate(old.record.id, 60), 409, "KEY_REVOKED");
    await expectRefusal(keys.rotate("key_000000000000000000000000", 60), 404, "KEY_NOT_FOUND");
    expect(events).toEqual([]);
    expect((await store.list({}, 10)).items).toHaveLength(1);
  });
});

describe("KeyService.import", () => {
  const hash = (n: number) => hashKey(`imported-${n}`);
  const entry = (n: number, overrides: Partial<ImportEntry> = {}): ImportEntry => ({
    hash: hash(n),
    prefix: "ab_1234",
    label: `imported ${n}`,
    plan: "free",
    ...overrides,
  });

  it("imports valid entries and reports each invalid one by index", async () => {
    const keys = service();
    const result = await keys.import([
      entry(0, { status: "revoked", createdAt: 123, expiresAt: NOW + 1, metadata: { from: "legacy" } }),
      entry(1, { hash: hash(1).toUpperCase() }),
      entry(2, { hash: hash(2).slice(1) }),
      entry(3, { hash: "z".repeat(64) }),
      entry(4, { prefix: "" }),
      entry(5, { prefix: "x".repeat(11) }),
      entry(6, { label: " " }),
      entry(7, { plan: "gold" }),
      entry(8),
    ]);
    expect(result.imported).toBe(2);
    expect(result.skipped).toBe(0);
    expect(result.errors.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    for (const e of result.errors) expect(e.message).toEqual(expect.any(String));
    expect(result.errors[0]?.message).toMatch(/hash/);
    expect(result.errors[3]?.message).toMatch(/prefix/);
    expect(result.errors[5]?.message).toMatch(/label/);
    expect(result.errors[6]?.message).toMatch(/plan/);

    const first = await store.getByHash(hash(0));
    expect(first).toMatchObject({
      hash: hash(0),
      prefix: "ab_1234",
      label: "imported 0",
      status: "revoked",
      createdAt: 123,
      expiresAt: NOW + 1,
      metadata: { from: "legacy" },
    });
    expect(await store.getByHash(hash(8))).toMatchObject({ status: "active", createdAt: NOW });
    // Each import drops the hash from negative caches everywhere.
    expect(events).toEqual([
      { type: "updated", id: "", hash: hash(0) },
      { type: "updated", id: "", hash: hash(8) },
    ]);
  });

  it("skips a hash that already exists", async () => {
    const keys = service();
    expect(await keys.import([entry(1)])).toEqual({ imported: 1, skipped: 0, errors: [] });
    expect(await keys.import([entry(1, { label: "again" }), entry(2)])).toEqual({
      imported: 1,
      skipped: 1,
      errors: [],
    });
    expect((await store.getByHash(hash(1)))?.label).toBe("imported 1");
  });

  it("stops at a store failure instead of reporting it as a bad entry", async () => {
    const keys = service();
    vi.spyOn(store, "create").mockRejectedValueOnce(new StoreUnavailableError("down"));
    await expect(keys.import([entry(1), entry(2)])).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

describe("KeyService.list and usage", () => {
  it("clamps the page size to 1..1000", async () => {
    const list = vi.spyOn(store, "list");
    const keys = service();
    await keys.list({}, 0);
    await keys.list({}, 5_000, "c");
    expect(list.mock.calls).toEqual([
      [{}, 1, undefined],
      [{}, 1000, "c"],
    ]);
  });

  it("clamps usage days to 1..400 and answers 404 for an unknown key", async () => {
    const keys = service();
    const { record } = await keys.create({ label: "x", plan: "free" });
    expect(await keys.usage(record.id, 0)).toHaveLength(1);
    expect(await keys.usage(record.id, 10_000)).toHaveLength(400);
    await expectRefusal(keys.usage("key_000000000000000000000000", 7), 404, "KEY_NOT_FOUND");
  });
});
