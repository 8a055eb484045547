/**
 * The embedded store survives restarts of the real `keygate serve` process:
 * a key created right before a SIGKILL still authenticates after the restart
 * (the create answer comes only once the key is on disk), and a graceful stop
 * (SIGTERM) flushes last_used_at even when the periodic flush has not run.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ServeProcess, startServe } from "../helpers/cli.js";
import { ADMIN_TOKEN, adminCall, createKey, getKey, type KeyView, statusWith } from "../helpers/keys.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

let upstream: TestUpstream;
let dir: string;
let configFile: string;
let running: ServeProcess | undefined;

beforeAll(async () => {
  upstream = await startUpstream();
  dir = await mkdtemp(join(tmpdir(), "keygate-restart-"));
  configFile = join(dir, "keygate.yaml");
  await writeFile(
    configFile,
    `
listeners:
  proxy: { host: 127.0.0.1, port: 0 }
  admin: { host: 127.0.0.1, port: 0 }
store:
  type: embedded
  embedded: { path: ${JSON.stringify(join(dir, "data", "keys.json"))} }
keys:
  # Far longer than the test: only the flush on shutdown can persist last_used_at.
  last_used_flush_ms: 3600000
server: { shutdown_grace_ms: 1000 }
admin: { tokens: ["${ADMIN_TOKEN}"] }
plans:
  pro: { api_access: true }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
`,
  );
});

afterEach(async () => {
  await running?.stop("SIGKILL");
  running = undefined;
});

afterAll(async () => {
  await upstream?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("embedded store across restarts of keygate serve", () => {
  it("keeps every key after a SIGKILL right after the create answered", async () => {
    running = await startServe(configFile);
    const keys: (KeyView & { key: string })[] = [];
    for (let i = 0; i < 5; i++) {
      keys.push(await createKey(running.adminUrl, { label: `Before kill ${i}`, plan: "pro" }));
    }
    // Several creates in flight at once, then the kill the moment the last answer arrived.
    const burst = await Promise.all(
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => createKey(running!.adminUrl, { label: `Burst ${i}`, plan: "pro" })),
    );
    const last = await createKey(running.adminUrl, { label: "Last before kill", plan: "pro" });
    process.kill(running.pid, "SIGKILL");
    const exit = await running.exited;
    expect(exit.signal).toBe("SIGKILL");
    keys.push(...burst, last);

    running = await startServe(configFile);
    for (const created of keys) {
      expect(await statusWith(running.proxyPort, "/api/check", created.key), created.label).toBe(200);
      const shown = await getKey(running.adminUrl, created.id);
      expect(shown).toMatchObject({ id: created.id, label: created.label, plan: "pro", status: "active" });
    }
    const list = await adminCall<{ items: KeyView[] }>(running.adminUrl, "GET", "/v1/keys?limit=1000");
    const ids = list.body.items.map((k) => k.id);
    expect(ids).toEqual(expect.arrayContaining(keys.map((k) => k.id)));
  });

  it("keeps revocations after a SIGKILL", async () => {
    running = await startServe(configFile);
    const created = await createKey(running.adminUrl, { label: "Revoked then killed", plan: "pro" });
    expect(await statusWith(running.proxyPort, "/api/check", created.key)).toBe(200);
    const revoked = await adminCall(running.adminUrl, "POST", `/v1/keys/${created.id}/revoke`);
    expect(revoked.status).toBe(200);
    process.kill(running.pid, "SIGKILL");
    await running.exited;

    running = await startServe(configFile);
    expect(await statusWith(running.proxyPort, "/api/check", created.key)).toBe(403);
    expect((await getKey(running.adminUrl, created.id)).status).toBe("revoked");
  });

  it("keeps last_used_at across a graceful restart (flushed on shutdown)", async () => {
    running = await startServe(configFile);
    const created = await createKey(running.adminUrl, { label: "Used then stopped", plan: "pro" });
    expect((await getKey(running.adminUrl, created.id)).last_used_at).toBeNull();
    const before = Date.now();
    expect(await statusWith(running.proxyPort, "/api/used", created.key)).toBe(200);
    expect(await statusWith(running.proxyPort, "/api/used", created.key)).toBe(200);
    const after = Date.now();
    // Not yet written: the periodic flush is an hour away.
    expect((await getKey(running.adminUrl, created.id)).last_used_at).toBeNull();

    const exit = await running.stop("SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    expect(running.stdout()).toContain('"msg":"stopped"');

    running = await startServe(configFile);
    const shown = await getKey(running.adminUrl, created.id);
    expect(shown.last_used_at).not.toBeNull();
    const lastUsed = Date.parse(shown.last_used_at as string);
    expect(lastUsed).toBeGreaterThanOrEqual(before - 5);
    expect(lastUsed).toBeLessThanOrEqual(after + 5);
    const usage = await adminCall<{ days: { date: string; requests: number }[] }>(
      running.adminUrl,
      "GET",
      `/v1/keys/${created.id}/usage?days=1`,
    );
    expect(usage.body.days).toEqual([{ date: new Date(lastUsed).toISOString().slice(0, 10), requests: 2 }]);
    expect(await statusWith(running.proxyPort, "/api/used", created.key)).toBe(200);
  });
});
