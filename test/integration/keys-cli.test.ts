/**
 * The `keygate keys` CLI end to end: the real built CLI talks to instance A's
 * admin API; two gateway instances (A and B) share one Redis namespace, and a
 * recording upstream shows what each forwarded. Covers create → use on both
 * instances → revoke (refused everywhere within a second), list, show,
 * rotate with and without grace, delete, import, usage, and the CLI's error
 * paths (one line on stderr, non-zero exit).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type CliResult, runCli } from "../helpers/cli.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  ADMIN_TOKEN,
  adminCall,
  createKey,
  getKey,
  type KeyView,
  proxyRequest,
  randomRpKey,
  redisStoreYaml,
  sha256,
  statusWith,
  waitUntil,
} from "../helpers/keys.js";
import { uniqueNamespace } from "../helpers/redis.js";
import { startUpstream, type TestUpstream, unusedPort } from "../helpers/upstream.js";

const INVALID_API_KEY = JSON.stringify({
  error: { code: "INVALID_API_KEY", message: "API key does not exist or has been revoked" },
});

let upstream: TestUpstream;
let a: TestGateway;
let b: TestGateway;
let namespace: string;
let workDir: string;
let cliEnv: Record<string, string>;

function config(upstreamUrl: string, redisUrl: string, ns: string): string {
  return `
admin: { tokens: ["${ADMIN_TOKEN}"] }
keys:
  # Long enough that only an invalidation event can make an instance drop a cached key in time.
  cache: { ttl_ms: 60000, negative_ttl_ms: 60000 }
  last_used_flush_ms: 100
plans:
  pro: { api_access: true }
  free: { api_access: false }
${redisStoreYaml(redisUrl, ns)}
routes:
  - name: api
    match: { path_prefix: /api/v1 }
    upstream: { url: "${upstreamUrl}" }
`;
}

beforeAll(async () => {
  const redisUrl = inject("redisUrl");
  namespace = uniqueNamespace("keys-cli");
  upstream = await startUpstream();
  a = await startGateway(config(upstream.url, redisUrl, namespace));
  b = await startGateway(config(upstream.url, redisUrl, namespace));
  workDir = await mkdtemp(join(tmpdir(), "keygate-keys-cli-"));
  cliEnv = { KEYGATE_ADMIN_URL: a.adminUrl, KEYGATE_ADMIN_TOKEN: ADMIN_TOKEN };
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await upstream?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  if (namespace) {
    const redis = new Redis(inject("redisUrl"), { lazyConnect: true });
    await redis.connect();
    const keys = await redis.keys(`${namespace}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
});

async function cli(...args: string[]): Promise<CliResult> {
  return runCli(["keys", ...args], cliEnv);
}

/** Runs a CLI command that must succeed with --json, and parses its output. */
async function cliJson<T>(...args: string[]): Promise<T> {
  const result = await cli(...args, "--json");
  expect(result.stderr, `keys ${args.join(" ")}`).toBe("");
  expect(result.code, `keys ${args.join(" ")}: ${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout) as T;
}

async function createWithCli(label: string, plan = "pro"): Promise<KeyView & { key: string }> {
  return cliJson<KeyView & { key: string }>("create", "--label", label, "--plan", plan);
}

/** The last request the upstream saw. */
function lastForwarded() {
  const request = upstream.requests[upstream.requests.length - 1];
  if (!request) throw new Error("the upstream saw no request");
  return request;
}

/** A failure of the CLI: non-zero exit, nothing on stdout, exactly one line on stderr. */
function expectOneLineFailure(result: CliResult, pattern: RegExp): void {
  expect(result.code, result.stdout + result.stderr).not.toBe(0);
  expect(result.code).not.toBeNull();
  expect(result.stdout).toBe("");
  expect(result.stderr.endsWith("\n")).toBe(true);
  expect(result.stderr.trimEnd().split("\n"), result.stderr).toHaveLength(1);
  expect(result.stderr).toMatch(pattern);
  expect(result.stderr).not.toContain(ADMIN_TOKEN);
}

describe("keygate keys CLI against two instances sharing one Redis", () => {
  it("creates a key that works on both instances; revoke makes both refuse it within one second", async () => {
    const created = await createWithCli("Production Dashboard");
    expect(created.key).toMatch(/^rp_[0-9a-f]{64}$/);
    expect(created.id).toMatch(/^key_[0-9a-f]{24}$/);
    expect(created.prefix).toBe(created.key.slice(0, 10));
    expect(created).toMatchObject({ label: "Production Dashboard", plan: "pro", status: "active" });
    expect(created).not.toHaveProperty("hash");

    for (const gateway of [a, b]) {
      const before = upstream.requests.length;
      const answer = await proxyRequest(gateway.addresses.proxy.port, "/api/v1/analytics/summary", {
        key: created.key,
      });
      expect(answer.status, answer.text).toBe(200);
      expect(upstream.requests.length).toBe(before + 1);
      const seen = lastForwarded();
      expect(seen.url).toBe("/api/v1/analytics/summary");
      expect(seen.headers["x-keygate-key-id"]).toBe(created.id);
      expect(seen.headers["x-keygate-plan"]).toBe("pro");
      expect(seen.headers["x-keygate-key-label"]).toBe("Production%20Dashboard");
      expect(seen.headers.authorization).toBeUndefined();
      expect(JSON.stringify(seen.rawHeaders)).not.toContain(created.key);
    }
    // Both instances now hold the key in their cache (TTL 60 s): only the revocation event can drop it.

    const revoke = await cli("revoke", created.id);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toContain(created.id);
    const revokedAt = Date.now();

    const refused = { a: 0, b: 0 };
    await waitUntil(
      "both instances to refuse the revoked key",
      async () => {
        const [sa, sb] = await Promise.all([
          statusWith(a.addresses.proxy.port, "/api/v1/x", created.key),
          statusWith(b.addresses.proxy.port, "/api/v1/x", created.key),
        ]);
        if (sa === 403 && !refused.a) refused.a = Date.now() - revokedAt;
        if (sb === 403 && !refused.b) refused.b = Date.now() - revokedAt;
        return refused.a > 0 && refused.b > 0;
      },
      { timeoutMs: 3_000, intervalMs: 50 },
    );
    expect(refused.a).toBeLessThan(1_000);
    expect(refused.b).toBeLessThan(1_000);

    for (const gateway of [a, b]) {
      const answer = await proxyRequest(gateway.addresses.proxy.port, "/api/v1/x", { key: created.key });
      expect(answer.status).toBe(403);
      expect(answer.text).toBe(INVALID_API_KEY);
    }
  });

  it("lists keys as a table and as JSON, never with a hash or a full key", async () => {
    // The human form of create: the key alone on the first line, a warning on stderr.
    const human = await cli("create", "--label", "List One", "--plan", "pro");
    expect(human.code, human.stderr).toBe(0);
    const firstKey = human.stdout.split("\n")[0] ?? "";
    expect(firstKey).toMatch(/^rp_[0-9a-f]{64}$/);
    expect(human.stdout).toMatch(/Key key_[0-9a-f]{24} \(List One, plan pro\) created\./);
    expect(human.stderr).toMatch(/^warning: store the key securely/);
    const firstId = /Key (key_[0-9a-f]{24})/.exec(human.stdout)![1]!;
    const first = { ...(await getKey(a.adminUrl, firstId)), key: firstKey };
    const second = await createKey(a.adminUrl, { label: "List Two", plan: "free" });

    const [table, json, filtered] = await Promise.all([
      cli("list"),
      cliJson<KeyView[]>("list"),
      cliJson<KeyView[]>("list", "--plan", "free"),
    ]);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+PREFIX\s+LABEL\s+PLAN\s+STATUS\s+LAST USED\s+CREATED\s+EXPIRES$/);
    const row = lines.find((line) => line.startsWith(first.id));
    expect(row).toBeDefined();
    expect(row).toContain(first.prefix);
    expect(row).toContain("List One");
    expect(row).toMatch(/\bpro\b.*\bactive\b/);
    expect(lines.some((line) => line.startsWith(second.id) && line.includes("List Two"))).toBe(true);

    const ids = json.map((k) => k.id);
    expect(ids).toEqual(expect.arrayContaining([first.id, second.id]));
    for (const item of json) {
      expect(item).not.toHaveProperty("hash");
      expect(item).not.toHaveProperty("key");
    }
    expect(filtered.map((k) => k.id)).toContain(second.id);
    expect(filtered.every((k) => k.plan === "free")).toBe(true);

    for (const output of [table.stdout, table.stderr, JSON.stringify(json)]) {
      for (const k of [first, second]) {
        expect(output).not.toContain(k.key);
        expect(output).not.toContain(sha256(k.key));
      }
    }
  });

  it("shows one key", async () => {
    const created = await createKey(a.adminUrl, { label: "Show Me", plan: "pro" });
    const [shown, json] = await Promise.all([cli("show", created.id), cliJson<KeyView>("show", created.id)]);
    expect(shown.code, shown.stderr).toBe(0);
    const [header, row, ...rest] = shown.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^ID\s+PREFIX\s+LABEL/);
    expect(row).toMatch(
      new RegExp(`^${created.id}\\s+${created.prefix}\\s+Show Me\\s+pro\\s+active\\s+never`),
    );
    expect(rest).toEqual([]);
    expect(shown.stdout).not.toContain(created.key);

    expect(json).toMatchObject({ id: created.id, label: "Show Me", plan: "pro", status: "active" });
    expect(json).not.toHaveProperty("hash");
    expect(json).not.toHaveProperty("key");
  });

  it("rotates with --grace 60: the old key keeps working until its new expires_at, the new one works", async () => {
    const old = await createKey(a.adminUrl, { label: "Rotating Graceful", plan: "pro" });
    for (const gateway of [a, b])
      expect(await statusWith(gateway.addresses.proxy.port, "/api/v1/r", old.key)).toBe(200);

    const before = Date.now();
    const rotated = await cliJson<KeyView & { key: string; previous: KeyView }>(
      "rotate",
      old.id,
      "--grace",
      "60",
    );
    expect(rotated.key).toMatch(/^rp_[0-9a-f]{64}$/);
    expect(rotated.key).not.toBe(old.key);
    expect(rotated.id).not.toBe(old.id);
    expect(rotated).toMatchObject({ label: "Rotating Graceful", plan: "pro", status: "active" });
    expect(rotated.previous).toMatchObject({ id: old.id, status: "active", rotated_to: rotated.id });
    const expiresAt = Date.parse(rotated.previous.expires_at ?? "");
    expect(expiresAt).toBeGreaterThanOrEqual(before + 59_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 61_000);

    for (const gateway of [a, b]) {
      const port = gateway.addresses.proxy.port;
      expect(await statusWith(port, "/api/v1/r", old.key)).toBe(200);
      const answer = await proxyRequest(port, "/api/v1/r", { key: rotated.key });
      expect(answer.status).toBe(200);
      expect(lastForwarded().headers["x-keygate-key-id"]).toBe(rotated.id);
    }
    const shown = await getKey(b.adminUrl, old.id);
    expect(shown.expires_at).toBe(rotated.previous.expires_at);
    expect(shown.rotated_to).toBe(rotated.id);

    const human = await cli("rotate", rotated.id, "--grace", "60");
    expect(human.code, human.stderr).toBe(0);
    const newKey = human.stdout.split("\n")[0] ?? "";
    expect(newKey).toMatch(/^rp_[0-9a-f]{64}$/);
    expect(human.stdout).toMatch(/keeps working until \d{4}-\d\d-\d\dT/);
    expect(await statusWith(b.addresses.proxy.port, "/api/v1/r", newKey)).toBe(200);
  });

  it("rotates without grace: the old key is refused at once on both instances", async () => {
    const old = await createKey(a.adminUrl, { label: "Rotating Now", plan: "pro" });
    for (const gateway of [a, b])
      expect(await statusWith(gateway.addresses.proxy.port, "/api/v1/r", old.key)).toBe(200);

    const rotated = await cliJson<KeyView & { key: string; previous: KeyView }>("rotate", old.id);
    expect(rotated.previous).toMatchObject({ id: old.id, status: "revoked", rotated_to: rotated.id });

    for (const gateway of [a, b]) {
      const refused = await proxyRequest(gateway.addresses.proxy.port, "/api/v1/r", { key: old.key });
      expect(refused.status).toBe(403);
      expect(refused.text).toBe(INVALID_API_KEY);
      expect(await statusWith(gateway.addresses.proxy.port, "/api/v1/r", rotated.key)).toBe(200);
    }
  });

  it("deletes a key: it is refused at once and no longer shown", async () => {
    const created = await createKey(a.adminUrl, { label: "Delete Me", plan: "pro" });
    for (const gateway of [a, b])
      expect(await statusWith(gateway.addresses.proxy.port, "/api/v1/d", created.key)).toBe(200);

    const deleted = await cli("delete", created.id);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain(created.id);
    for (const gateway of [a, b])
      expect(await statusWith(gateway.addresses.proxy.port, "/api/v1/d", created.key)).toBe(403);

    expectOneLineFailure(await cli("show", created.id), /no key with id/);
    const listed = await adminCall<{ items: KeyView[] }>(a.adminUrl, "GET", "/v1/keys?limit=1000");
    expect(listed.body.items.map((k) => k.id)).not.toContain(created.id);
  });

  it("imports hashed keys from JSON lines: good entries authenticate, a bad one is reported with exit 1", async () => {
    const keys = [randomRpKey(), randomRpKey(), randomRpKey()];
    // Before the import the first key is unknown, and both instances remember that (negative cache).
    for (const gateway of [a, b])
      expect(await statusWith(gateway.addresses.proxy.port, "/api/v1/i", keys[0]!)).toBe(403);

    const lines = keys.map((key, i) =>
      JSON.stringify({ hash: sha256(key), prefix: key.slice(0, 10), label: `Imported ${i}`, plan: "pro" }),
    );
    lines.push(JSON.stringify({ hash: "not-a-sha256", prefix: "rp_bad", label: "Broken", plan: "pro" }));
    const file = join(workDir, "import.ndjson");
    await writeFile(file, `${lines.join("\n")}\n`);

    const result = await cli("import", file);
    expect(result.code, result.stdout + result.stderr).toBe(1);
    expect(result.stdout).toContain("3 imported, 0 already present, 1 rejected");
    expect(result.stdout).toMatch(/entry 4: hash must be 64 lower-case hex/);
    for (const key of keys) {
      for (const gateway of [a, b]) {
        const answer = await proxyRequest(gateway.addresses.proxy.port, "/api/v1/i", { key });
        expect(answer.status, answer.text).toBe(200);
      }
    }
    expect(lastForwarded().headers["x-keygate-key-label"]).toBe("Imported%202");

    // Again, with --json: everything already present, the bad entry still rejected (exit 1).
    const again = await cli("import", file, "--json");
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout)).toEqual({
      imported: 0,
      skipped: 3,
      errors: [{ index: 3, message: expect.stringMatching(/^hash must be 64 lower-case hex/) }],
    });
  });

  it("reports usage per day from the requests of both instances", async () => {
    const created = await createKey(a.adminUrl, { label: "Usage Counter", plan: "pro" });
    for (let i = 0; i < 3; i++)
      expect(await statusWith(a.addresses.proxy.port, "/api/v1/u", created.key)).toBe(200);
    for (let i = 0; i < 2; i++)
      expect(await statusWith(b.addresses.proxy.port, "/api/v1/u", created.key)).toBe(200);
    const today = new Date().toISOString().slice(0, 10);

    type Usage = { id: string; days: { date: string; requests: number }[] };
    // Each instance flushes its own counts (every 100 ms here); wait for both through the API.
    await waitUntil(
      "5 requests counted",
      async () => {
        const answer = await adminCall<Usage>(a.adminUrl, "GET", `/v1/keys/${created.id}/usage?days=1`);
        return answer.body.days[0]?.requests === 5;
      },
      { timeoutMs: 5_000, intervalMs: 50 },
    );
    const [usage, human] = await Promise.all([
      cliJson<Usage>("usage", created.id, "--days", "7"),
      cli("usage", created.id, "--days", "2"),
    ]);
    expect(usage?.id).toBe(created.id);
    expect(usage?.days).toHaveLength(7);
    expect(usage?.days[6]).toEqual({ date: today, requests: 5 });
    expect(usage?.days.slice(0, 6).every((d) => d.requests === 0)).toBe(true);

    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout.trimEnd().split("\n")).toHaveLength(2);
    expect(human.stdout).toContain(`${today}  5\n`);

    // last_used_at was flushed too.
    expect((await getKey(a.adminUrl, created.id)).last_used_at).not.toBeNull();
  });
});

describe.concurrent("keygate keys CLI failures: one line on stderr, non-zero exit", () => {
  it("cannot reach the admin API", async () => {
    const port = await unusedPort();
    const result = await runCli(["keys", "list"], {
      KEYGATE_ADMIN_URL: `http://127.0.0.1:${port}`,
      KEYGATE_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    expectOneLineFailure(result, new RegExp(`cannot reach the admin API at http://127\\.0\\.0\\.1:${port}`));
  });

  it("wrong admin token", async () => {
    const result = await runCli(["keys", "list"], {
      KEYGATE_ADMIN_URL: a.adminUrl,
      KEYGATE_ADMIN_TOKEN: "wrong-token-0123456789abcdef",
    });
    expectOneLineFailure(result, /refused the token/);
  });

  it("no admin token at all", async () => {
    const result = await runCli(["keys", "list"], { KEYGATE_ADMIN_URL: a.adminUrl });
    expectOneLineFailure(result, /no admin token/);
  });

  it("unknown key id for show, revoke, rotate, delete and usage", async () => {
    const unknown = "key_000000000000000000000000";
    const commands = ["show", "revoke", "rotate", "delete", "usage"];
    const results = await Promise.all(commands.map((command) => cli(command, unknown)));
    for (const result of results) expectOneLineFailure(result, new RegExp(`no key with id "${unknown}"`));
  });

  it("create without --plan, and an unknown plan", async () => {
    const [noPlan, unknownPlan] = await Promise.all([
      cli("create", "--label", "x"),
      cli("create", "--label", "x", "--plan", "gold"),
    ]);
    expectOneLineFailure(noPlan, /needs --label and --plan/);
    expectOneLineFailure(unknownPlan, /unknown plan "gold"/);
  });
});
