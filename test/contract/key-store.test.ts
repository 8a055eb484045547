/**
 * The KeyStore contract: one suite, run against every implementation, so the embedded store
 * (single instance) and the Redis store (shared) behave the same for everything the key service,
 * the lookup cache and the last-used tracker rely on.
 */
import path from "node:path";
import { afterEach, beforeEach, describe, expect, inject, it, vi } from "vitest";
import type { KeyEvent, KeyRecord, Touch } from "../../src/keys/record.js";
import { utcDay } from "../../src/keys/record.js";
import { EmbeddedKeyStore } from "../../src/store/embedded.js";
import type { KeyStore } from "../../src/store/key-store.js";
import { DAY, makeRecord, openRedisStore, sleep, T0, tempDir } from "./fixtures.js";

interface Subject {
  store: KeyStore;
  /** A second instance on the same data, for stores that can be shared. */
  peer?: () => KeyStore;
  cleanup: () => Promise<void>;
}

function describeKeyStoreContract(name: string, factory: () => Promise<Subject>): void {
  describe(`KeyStore contract: ${name}`, () => {
    let subject: Subject;
    let store: KeyStore;

    beforeEach(async () => {
      subject = await factory();
      store = subject.store;
    });

    afterEach(async () => {
      await subject.cleanup();
    });

    async function createAll(records: readonly KeyRecord[]): Promise<void> {
      for (const record of records) expect(await store.create(record)).toBe(true);
    }

    async function listAll(filter = {}, limit = 1000): Promise<KeyRecord[]> {
      const page = await store.list(filter, limit);
      expect(page.nextCursor).toBeUndefined();
      return [...page.items];
    }

    async function allPages(filter: object, limit: number): Promise<KeyRecord[][]> {
      const pages: KeyRecord[][] = [];
      let cursor: string | undefined;
      do {
        const page = await store.list(filter, limit, cursor);
        pages.push([...page.items]);
        cursor = page.nextCursor;
        expect(pages.length).toBeLessThan(1000);
      } while (cursor !== undefined);
      return pages;
    }

    describe("create and read", () => {
      it("returns an equal record by hash and by id, optional fields set", async () => {
        const record = makeRecord({
          label: 'Ünïcode label: with spaces, % and "quotes"',
          plan: "pro",
          expiresAt: T0 + 30 * DAY,
          metadata: { team: "video", "cost-center": "42", empty: "" },
          rotatedTo: "key_000000000000000000000001",
          limits: { default: { "1m": 100, "1d": 10_000 } },
        });
        expect(await store.create(record)).toBe(true);
        const byHash = await store.getByHash(record.hash);
        const byId = await store.getById(record.id);
        expect(byHash).toEqual(record);
        expect(byId).toEqual(record);
        expect(byHash?.lastUsedAt).toBeUndefined();
      });

      it("returns an equal record with every optional field undefined", async () => {
        const record = makeRecord({ status: "revoked" });
        expect(await store.create(record)).toBe(true);
        for (const found of [await store.getByHash(record.hash), await store.getById(record.id)]) {
          expect(found).toEqual(record);
          expect(found?.lastUsedAt).toBeUndefined();
          expect(found?.expiresAt).toBeUndefined();
          expect(found?.metadata).toBeUndefined();
          expect(found?.rotatedTo).toBeUndefined();
        }
      });

      it("keeps a lastUsedAt given at creation (imported keys)", async () => {
        const record = makeRecord({ lastUsedAt: T0 - DAY });
        await createAll([record]);
        expect((await store.getById(record.id))?.lastUsedAt).toBe(T0 - DAY);
      });

      it("answers undefined for an unknown hash or id", async () => {
        expect(await store.getByHash(makeRecord().hash)).toBeUndefined();
        expect(await store.getById(makeRecord().id)).toBeUndefined();
      });

      it("refuses a duplicate id and changes nothing", async () => {
        const original = makeRecord({ label: "original" });
        await createAll([original]);
        const clash = makeRecord({ id: original.id, label: "clash", plan: "pro" });
        expect(await store.create(clash)).toBe(false);
        expect(await store.getById(original.id)).toEqual(original);
        expect(await store.getByHash(original.hash)).toEqual(original);
        expect(await store.getByHash(clash.hash)).toBeUndefined();
        expect(await listAll()).toEqual([original]);
      });

      it("refuses a duplicate hash and changes nothing", async () => {
        const original = makeRecord({ label: "original" });
        await createAll([original]);
        const clash = makeRecord({ hash: original.hash, label: "clash", plan: "pro" });
        expect(await store.create(clash)).toBe(false);
        expect(await store.getByHash(original.hash)).toEqual(original);
        expect(await store.getById(clash.id)).toBeUndefined();
        expect(await listAll()).toEqual([original]);
      });
    });

    describe("update", () => {
      it("patches the given fields, keeps the others and returns the updated record", async () => {
        const record = makeRecord({ metadata: { a: "1" } });
        await createAll([record]);
        const updated = await store.update(record.id, {
          label: "renamed",
          plan: "pro",
          status: "revoked",
          expiresAt: T0 + DAY,
          rotatedTo: "key_000000000000000000000002",
        });
        const expected: KeyRecord = {
          ...record,
          label: "renamed",
          plan: "pro",
          status: "revoked",
          expiresAt: T0 + DAY,
          rotatedTo: "key_000000000000000000000002",
        };
        expect(updated).toEqual(expected);
        expect(await store.getById(record.id)).toEqual(expected);
        expect(await store.getByHash(record.hash)).toEqual(expected);
      });

      it("replaces metadata as a whole", async () => {
        const record = makeRecord({ metadata: { a: "1", b: "2" } });
        await createAll([record]);
        await store.update(record.id, { metadata: { c: "3" } });
        expect((await store.getById(record.id))?.metadata).toEqual({ c: "3" });
      });

      it("removes expiresAt, metadata and rotatedTo given as undefined", async () => {
        const record = makeRecord({
          expiresAt: T0 + DAY,
          metadata: { a: "1" },
          rotatedTo: "key_000000000000000000000003",
        });
        await createAll([record]);
        const updated = await store.update(record.id, {
          expiresAt: undefined,
          metadata: undefined,
          rotatedTo: undefined,
        });
        const expected = { ...record, expiresAt: undefined, metadata: undefined, rotatedTo: undefined };
        expect(updated).toEqual(expected);
        const found = await store.getById(record.id);
        expect(found).toEqual(expected);
        expect(found?.expiresAt).toBeUndefined();
        expect(found?.metadata).toBeUndefined();
        expect(found?.rotatedTo).toBeUndefined();
      });

      it("leaves optional fields alone when they are absent from the patch", async () => {
        const record = makeRecord({ expiresAt: T0 + DAY, metadata: { a: "1" } });
        await createAll([record]);
        await store.update(record.id, { label: "only the label" });
        expect(await store.getById(record.id)).toEqual({ ...record, label: "only the label" });
      });

      it("keeps required fields given as undefined (they cannot be removed)", async () => {
        const record = makeRecord({ label: "keep me", plan: "pro" });
        await createAll([record]);
        const updated = await store.update(record.id, {
          label: undefined,
          plan: undefined,
          status: undefined,
        });
        expect(updated).toEqual(record);
        expect(await store.getById(record.id)).toEqual(record);
      });

      it("stores any label text, including ones that look like separators or JSON", async () => {
        const record = makeRecord();
        await createAll([record]);
        for (const label of ["--", "-- --", '{"label":"x"}', "a\nb", "   spaced   "]) {
          expect((await store.update(record.id, { label }))?.label).toBe(label);
          expect((await store.getById(record.id))?.label).toBe(label);
        }
      });

      it("answers undefined for an unknown id and creates nothing", async () => {
        const ghost = makeRecord();
        expect(await store.update(ghost.id, { label: "x" })).toBeUndefined();
        expect(await store.getById(ghost.id)).toBeUndefined();
        expect(await listAll()).toEqual([]);
      });
    });

    describe("delete", () => {
      it("removes the record and its id index and returns what it removed", async () => {
        const record = makeRecord({ expiresAt: T0 + DAY, metadata: { a: "1" } });
        const other = makeRecord();
        await createAll([record, other]);
        expect(await store.delete(record.id)).toEqual(record);
        expect(await store.getById(record.id)).toBeUndefined();
        expect(await store.getByHash(record.hash)).toBeUndefined();
        expect(await listAll()).toEqual([other]);
        expect(await store.update(record.id, { label: "x" })).toBeUndefined();
        expect(await store.delete(record.id)).toBeUndefined();
        // Both indexes are gone: the same id and hash can be created again.
        expect(await store.create(record)).toBe(true);
        expect(await store.getById(record.id)).toEqual(record);
      });

      it("answers undefined for an unknown id", async () => {
        const kept = makeRecord();
        await createAll([kept]);
        expect(await store.delete(makeRecord().id)).toBeUndefined();
        expect(await listAll()).toEqual([kept]);
      });

      it("drops the usage of the deleted key", async () => {
        const record = makeRecord();
        await createAll([record]);
        await store.touch([{ id: record.id, hash: record.hash, lastUsedAt: T0, count: 3 }]);
        await store.delete(record.id);
        expect(await store.usage(record.id, 2, T0)).toEqual([
          { date: utcDay(T0 - DAY), requests: 0 },
          { date: utcDay(T0), requests: 0 },
        ]);
      });
    });

    describe("list", () => {
      it("is empty on an empty store", async () => {
        expect(await store.list({}, 10)).toEqual({ items: [], nextCursor: undefined });
      });

      it("orders by creation time (oldest first), then by id, whatever the insertion order", async () => {
        const a = makeRecord({ createdAt: T0 + 1000 });
        const b = makeRecord({ createdAt: T0 + 2000 });
        const c = makeRecord({ createdAt: T0 + 3000 });
        const sameTime = [makeRecord({ createdAt: T0 + 1500 }), makeRecord({ createdAt: T0 + 1500 })];
        const [first, second] = [...sameTime].sort((x, y) => (x.id < y.id ? -1 : 1));
        await createAll([c, sameTime[0] as KeyRecord, a, b, sameTime[1] as KeyRecord]);
        expect(await listAll()).toEqual([a, first, second, b, c]);
      });

      it("orders times of different digit counts numerically", async () => {
        const early = makeRecord({ createdAt: 999_999_999 });
        const late = makeRecord({ createdAt: 1_000_000_000_000 });
        await createAll([late, early]);
        expect(await listAll()).toEqual([early, late]);
      });

      it("pages with limit and cursor, covering every record exactly once", async () => {
        const records = Array.from({ length: 7 }, (_, i) => makeRecord({ createdAt: T0 + i }));
        await createAll(records);
        const pages = await allPages({}, 3);
        expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
        expect(pages.flat()).toEqual(records);
      });

      it("gives no cursor on a last page that is exactly full", async () => {
        const records = Array.from({ length: 6 }, (_, i) => makeRecord({ createdAt: T0 + i }));
        await createAll(records);
        const pages = await allPages({}, 3);
        expect(pages.map((p) => p.length)).toEqual([3, 3]);
        expect(pages.flat()).toEqual(records);
      });

      it("with limit 1 walks every record", async () => {
        const records = Array.from({ length: 4 }, (_, i) => makeRecord({ createdAt: T0 + i }));
        await createAll(records);
        const pages = await allPages({}, 1);
        expect(pages.flat()).toEqual(records);
        expect(pages.every((p) => p.length === 1)).toBe(true);
      });

      it("continues after a cursor whose record was deleted meanwhile", async () => {
        const records = Array.from({ length: 5 }, (_, i) => makeRecord({ createdAt: T0 + i }));
        await createAll(records);
        const first = await store.list({}, 2);
        expect(first.items).toEqual(records.slice(0, 2));
        await store.delete(records[1]?.id as string);
        const rest = await store.list({}, 10, first.nextCursor);
        expect(rest).toEqual({ items: records.slice(2), nextCursor: undefined });
      });

      it("filters by display prefix (starts with)", async () => {
        const a = makeRecord({ prefix: "rp_abc1234" });
        const b = makeRecord({ prefix: "rp_abd0000" });
        const c = makeRecord({ prefix: "giga_abc12" });
        await createAll([a, b, c]);
        expect(await listAll({ prefix: "rp_ab" })).toEqual([a, b]);
        expect(await listAll({ prefix: "rp_abc" })).toEqual([a]);
        expect(await listAll({ prefix: "abc" })).toEqual([]);
      });

      it("filters by label, case-insensitive substring", async () => {
        const a = makeRecord({ label: "Mobile App (iOS)" });
        const b = makeRecord({ label: "web app" });
        const c = makeRecord({ label: "batch job" });
        await createAll([a, b, c]);
        expect(await listAll({ label: "APP" })).toEqual([a, b]);
        expect(await listAll({ label: "ios)" })).toEqual([a]);
        expect(await listAll({ label: "nothing" })).toEqual([]);
      });

      it("filters by plan and by status (exact)", async () => {
        const a = makeRecord({ plan: "free", status: "active" });
        const b = makeRecord({ plan: "pro", status: "active" });
        const c = makeRecord({ plan: "pro", status: "revoked" });
        const d = makeRecord({ plan: "pro-plus", status: "active" });
        await createAll([a, b, c, d]);
        expect(await listAll({ plan: "pro" })).toEqual([b, c]);
        expect(await listAll({ status: "revoked" })).toEqual([c]);
        expect(await listAll({ status: "active" })).toEqual([a, b, d]);
        expect(await listAll({ plan: "pro", status: "active" })).toEqual([b]);
      });

      it("combines a filter with paging", async () => {
        const records = Array.from({ length: 12 }, (_, i) =>
          makeRecord({ createdAt: T0 + i, plan: i % 3 === 0 ? "pro" : "free" }),
        );
        await createAll(records);
        const pro = records.filter((r) => r.plan === "pro");
        const pages = await allPages({ plan: "pro" }, 2);
        expect(pages.map((p) => p.length)).toEqual([2, 2]);
        expect(pages.flat()).toEqual(pro);
        const free = await allPages({ plan: "free" }, 3);
        expect(free.flat()).toEqual(records.filter((r) => r.plan === "free"));
      });

      it("pages a sparse filter over many records", async () => {
        // More records than one internal read batch, with matches far apart.
        const records = Array.from({ length: 230 }, (_, i) =>
          makeRecord({ createdAt: T0 + i, label: i % 45 === 7 ? `needle ${i}` : `hay ${i}` }),
        );
        await Promise.all(records.map((r) => store.create(r)));
        const needles = records.filter((r) => r.label.startsWith("needle"));
        expect(needles.length).toBe(5);
        for (const limit of [1, 2, 4, 5, 100]) {
          const pages = await allPages({ label: "NEEDLE" }, limit);
          expect(pages.flat()).toEqual(needles);
          expect(pages.slice(0, -1).every((p) => p.length === limit)).toBe(true);
        }
        const everything = await allPages({}, 50);
        expect(everything.flat()).toEqual(records);
      });
    });

    describe("touch and usage", () => {
      it("sets lastUsedAt and never moves it backwards", async () => {
        const record = makeRecord();
        await createAll([record]);
        const at = (t: number): Touch => ({ id: record.id, hash: record.hash, lastUsedAt: t, count: 1 });
        await store.touch([at(T0 + 5000)]);
        expect((await store.getByHash(record.hash))?.lastUsedAt).toBe(T0 + 5000);
        await store.touch([at(T0 + 1000)]);
        expect((await store.getByHash(record.hash))?.lastUsedAt).toBe(T0 + 5000);
        await store.touch([at(T0 + 9000)]);
        expect((await store.getById(record.id))?.lastUsedAt).toBe(T0 + 9000);
        // Touching changes nothing else.
        expect(await store.getById(record.id)).toEqual({ ...record, lastUsedAt: T0 + 9000 });
      });

      it("counts usage per UTC day, summing batches", async () => {
        const a = makeRecord();
        const b = makeRecord();
        await createAll([a, b]);
        const midnight = Date.UTC(2025, 0, 10);
        await store.touch([
          { id: a.id, hash: a.hash, lastUsedAt: midnight - 1, count: 4 }, // 2025-01-09 23:59:59.999
          { id: b.id, hash: b.hash, lastUsedAt: midnight + 10, count: 1 },
        ]);
        await store.touch([{ id: a.id, hash: a.hash, lastUsedAt: midnight, count: 2 }]); // 2025-01-10
        await store.touch([{ id: a.id, hash: a.hash, lastUsedAt: midnight + DAY - 1, count: 5 }]);
        expect(await store.usage(a.id, 3, midnight + 60_000)).toEqual([
          { date: "2025-01-08", requests: 0 },
          { date: "2025-01-09", requests: 4 },
          { date: "2025-01-10", requests: 7 },
        ]);
        expect(await store.usage(b.id, 2, midnight + 60_000)).toEqual([
          { date: "2025-01-09", requests: 0 },
          { date: "2025-01-10", requests: 1 },
        ]);
      });

      it("skips unknown hashes and still applies the rest of the batch", async () => {
        const known = makeRecord();
        const unknown = makeRecord();
        await createAll([known]);
        await store.touch([
          { id: unknown.id, hash: unknown.hash, lastUsedAt: T0, count: 9 },
          { id: known.id, hash: known.hash, lastUsedAt: T0, count: 2 },
        ]);
        expect(await store.getByHash(unknown.hash)).toBeUndefined();
        expect(await store.getById(unknown.id)).toBeUndefined();
        expect(await store.usage(unknown.id, 1, T0)).toEqual([{ date: utcDay(T0), requests: 0 }]);
        expect(await store.usage(known.id, 1, T0)).toEqual([{ date: utcDay(T0), requests: 2 }]);
        expect(await listAll()).toEqual([{ ...known, lastUsedAt: T0 }]);
      });

      it("does not bring a deleted key back", async () => {
        const record = makeRecord();
        await createAll([record]);
        await store.delete(record.id);
        await store.touch([{ id: record.id, hash: record.hash, lastUsedAt: T0, count: 1 }]);
        expect(await store.getByHash(record.hash)).toBeUndefined();
        expect(await store.getById(record.id)).toBeUndefined();
        expect(await listAll()).toEqual([]);
        expect(await store.usage(record.id, 1, T0)).toEqual([{ date: utcDay(T0), requests: 0 }]);
        // And the hash is still free for a new record.
        expect(await store.create(record)).toBe(true);
      });

      it("accepts an empty batch", async () => {
        await expect(store.touch([])).resolves.toBeUndefined();
      });

      it("returns `days` entries, oldest first, zero where unused", async () => {
        const record = makeRecord();
        await createAll([record]);
        await store.touch([{ id: record.id, hash: record.hash, lastUsedAt: T0 - 2 * DAY, count: 3 }]);
        const usage = await store.usage(record.id, 7, T0);
        expect(usage).toEqual([
          { date: "2025-01-04", requests: 0 },
          { date: "2025-01-05", requests: 0 },
          { date: "2025-01-06", requests: 0 },
          { date: "2025-01-07", requests: 0 },
          { date: "2025-01-08", requests: 3 },
          { date: "2025-01-09", requests: 0 },
          { date: "2025-01-10", requests: 0 },
        ]);
        expect(await store.usage(record.id, 1, T0)).toEqual([{ date: "2025-01-10", requests: 0 }]);
        expect(await store.usage(makeRecord().id, 3, T0)).toEqual([
          { date: "2025-01-08", requests: 0 },
          { date: "2025-01-09", requests: 0 },
          { date: "2025-01-10", requests: 0 },
        ]);
      });
    });

    describe("events", () => {
      const event = (type: KeyEvent["type"]): KeyEvent => {
        const record = makeRecord();
        return { type, id: record.id, hash: record.hash };
      };

      it("delivers an event published by the same instance to its subscribers", async () => {
        const seen: KeyEvent[] = [];
        const gaps = vi.fn();
        const unsubscribe = await store.subscribe((e) => seen.push(e), gaps);
        const events = [event("revoked"), event("deleted"), event("rotated"), event("updated")];
        for (const e of events) await store.publish(e);
        await vi.waitFor(() => expect(seen).toEqual(events), { timeout: 5_000 });
        expect(gaps).not.toHaveBeenCalled();
        await unsubscribe();
      });

      it("stops delivering after unsubscribe", async () => {
        const stopped: KeyEvent[] = [];
        const still: KeyEvent[] = [];
        const unsubscribe = await store.subscribe(
          (e) => stopped.push(e),
          () => {},
        );
        const stay = await store.subscribe(
          (e) => still.push(e),
          () => {},
        );
        await unsubscribe();
        const e = event("revoked");
        await store.publish(e);
        await vi.waitFor(() => expect(still).toEqual([e]), { timeout: 5_000 });
        await sleep(100);
        expect(stopped).toEqual([]);
        await stay();
      });

      it("delivers events between instances sharing the data", async ({ skip }) => {
        if (!subject.peer) return skip("this store serves one instance only");
        const peer = subject.peer();
        const here: KeyEvent[] = [];
        const there: KeyEvent[] = [];
        await store.subscribe(
          (e) => here.push(e),
          () => {},
        );
        await peer.subscribe(
          (e) => there.push(e),
          () => {},
        );
        const fromPeer = event("revoked");
        const fromHere = event("deleted");
        await peer.publish(fromPeer);
        await store.publish(fromHere);
        await vi.waitFor(
          () => {
            expect(here).toEqual([fromPeer, fromHere]);
            expect(there).toEqual([fromPeer, fromHere]);
          },
          { timeout: 5_000 },
        );
        // The peer also reads what this instance wrote.
        const record = makeRecord();
        await createAll([record]);
        expect(await peer.getByHash(record.hash)).toEqual(record);
      });
    });

    describe("health", () => {
      it("answers ping while open", async () => {
        expect(await store.ping()).toBe(true);
      });

      it("answers ping false after close, and close is idempotent", async () => {
        await store.close();
        expect(await store.ping()).toBe(false);
        await expect(store.close()).resolves.toBeUndefined();
      });
    });
  });
}

describeKeyStoreContract("embedded", async () => {
  const { dir, remove } = await tempDir();
  const store = await EmbeddedKeyStore.open(path.join(dir, "keys.json"));
  return {
    store,
    cleanup: async () => {
      await store.close();
      await remove();
    },
  };
});

describeKeyStoreContract("redis", async () => {
  const { store, peer, cleanup } = openRedisStore(inject("redisUrl"));
  return { store, peer, cleanup };
});
