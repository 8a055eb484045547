/**
 * Configuration reload of the real `keygate serve` process (Redis store,
 * ports 0) under a steady stream of requests:
 *
 * - SIGHUP with a changed limit: no request fails (only 200 and 429, no 5xx,
 *   no connection error) and the new limit applies at once, enforced too;
 * - SIGHUP with a broken file: the running configuration keeps serving and
 *   stdout has the "configuration rejected" line listing the problems;
 * - `reload.watch: true`: rewriting the file, in place or by rename, reloads
 *   it without any signal.
 */

import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { Agent } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { type ServeProcess, startServe } from "../helpers/cli.js";
import { ADMIN_TOKEN, createKey, sleep, waitUntil } from "../helpers/keys.js";
import {
  awaitWindowRoom,
  call,
  connectRedis,
  dropNamespace,
  legacyHeaders,
  MINUTE_MS,
  metricsText,
  metricValue,
} from "../helpers/ratelimit.js";
import { uniqueNamespace } from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

let redisUrl: string;
let redis: Redis;
let upstream: TestUpstream;
let dir: string;
let running: ServeProcess | undefined;
const namespaces: string[] = [];

beforeAll(async () => {
  redisUrl = inject("redisUrl");
  redis = await connectRedis(redisUrl);
  upstream = await startUpstream();
  dir = await mkdtemp(join(tmpdir(), "keygate-reload-"));
});

afterEach(async () => {
  await running?.stop("SIGKILL");
  running = undefined;
  await Promise.all(namespaces.splice(0).map((ns) => dropNamespace(redisUrl, ns)));
});

afterAll(async () => {
  await upstream?.close();
  redis?.disconnect();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function configText(namespace: string, limit: number, options: { watch?: boolean } = {}): string {
  return `
listeners:
  proxy: { host: 127.0.0.1, port: 0 }
  admin: { host: 127.0.0.1, port: 0 }
store:
  type: redis
  redis: { url: "${redisUrl}", namespace: "${namespace}", command_timeout_ms: 1000 }
server: { shutdown_grace_ms: 1000 }
admin: { tokens: ["${ADMIN_TOKEN}"] }
reload: { watch: ${options.watch ?? false} }
plans:
  pro:
    limits: [{ name: api, windows: { minute: ${limit} } }]
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
`;
}

/** Three mistakes at once: an unknown key, a bad upstream URL, a plan naming an unknown route. */
const BROKEN = (namespace: string) =>
  configText(namespace, 7)
    .replace('upstream: { url: "', 'upstream: { url: "ftp://not-http/')
    .replace("limits: [{ name: api,", "limits: [{ name: api, routes: [nowhere],")
    .replace("server: { shutdown_grace_ms: 1000 }", "server: { shutdown_grace_ms: 1000, colour: blue }");

interface Sample {
  status: number | "error";
  limit: number | undefined;
  error?: string;
}

/** `workers` clients sending requests back to back on a keep-alive agent until stopped. */
function steadyLoop(port: number, key: string, workers = 4) {
  const agent = new Agent({ keepAlive: true, maxSockets: workers });
  const samples: Sample[] = [];
  let running = true;
  const tasks = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; running; i++) {
      try {
        const answer = await call(port, `/api/steady/${w}/${i}`, { key, agent });
        samples.push({ status: answer.status, limit: legacyHeaders(answer).limit });
      } catch (error) {
        samples.push({ status: "error", limit: undefined, error: (error as Error).message });
        await sleep(5);
      }
    }
  });
  return {
    samples,
    /** Resolves once `count` more answers have arrived. */
    async more(count: number) {
      const target = samples.length + count;
      await waitUntil(`${count} more answers`, () => samples.length >= target, { intervalMs: 10 });
    },
    async stop() {
      running = false;
      await Promise.all(tasks);
      agent.destroy();
    },
  };
}

interface LogLine {
  msg?: string;
  level?: string;
  problems?: { path: string; line?: number; message: string }[];
  trigger?: string;
}

function logLines(serve: ServeProcess): LogLine[] {
  return serve
    .stdout()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as LogLine];
      } catch {
        return []; // a line still being written
      }
    });
}

async function reloads(serve: ServeProcess, result: "ok" | "rejected"): Promise<number> {
  return metricValue(await metricsText(serve.adminUrl), "keygate_config_reloads_total", { result });
}

describe("SIGHUP under load", () => {
  it("applies a changed limit without failing a request, and keeps serving through a broken file", async () => {
    const namespace = uniqueNamespace("reload");
    namespaces.push(namespace);
    const file = join(dir, "sighup.yaml");
    await writeFile(file, configText(namespace, 100_000));
    running = await startServe(file);
    const serve = running;
    const key = await createKey(serve.adminUrl, { label: "Steady", plan: "pro" });
    // The new limit (7) must be enforced within one minute of the store's clock.
    await awaitWindowRoom(redis, MINUTE_MS, 8_000);

    const loop = steadyLoop(serve.proxyPort, key.key);
    try {
      await loop.more(100);
      expect(loop.samples.every((s) => s.status === 200 && s.limit === 100_000)).toBe(true);

      // A changed limit, then SIGHUP while requests keep coming.
      await writeFile(file, configText(namespace, 7));
      const signalledAt = loop.samples.length;
      process.kill(serve.pid, "SIGHUP");
      await waitUntil("answers with the new limit", () => loop.samples.some((s) => s.limit === 7), {
        timeoutMs: 5_000,
        intervalMs: 10,
      });
      await loop.more(100);
      expect(await reloads(serve, "ok")).toBe(1);
      const afterReload = loop.samples.slice(signalledAt);
      const newLimit = afterReload.filter((s) => s.limit === 7);
      // The new limit is enforced, on a fresh counter: exactly 7 admitted, then 429s.
      expect(newLimit.filter((s) => s.status === 200)).toHaveLength(7);
      expect(loop.samples.slice(-50).every((s) => s.status === 429 && s.limit === 7)).toBe(true);

      // A broken file: rejected with every problem, the running configuration keeps serving.
      await writeFile(file, BROKEN(namespace));
      const brokenAt = loop.samples.length;
      process.kill(serve.pid, "SIGHUP");
      await waitUntil("the reload to be rejected", async () => (await reloads(serve, "rejected")) === 1, {
        timeoutMs: 5_000,
      });
      await loop.more(100);
      expect(loop.samples.slice(brokenAt).every((s) => s.status === 429 && s.limit === 7)).toBe(true);
      expect(await reloads(serve, "ok")).toBe(1);
      // The rejection is on stdout.
      await waitUntil(
        'the "configuration rejected" log line',
        () => logLines(serve).some((l) => l.msg?.startsWith("configuration rejected")),
        { timeoutMs: 5_000 },
      );
    } finally {
      await loop.stop();
    }

    const failures = loop.samples.filter((s) => s.status !== 200 && s.status !== 429);
    expect(failures, "answers other than 200 and 429").toEqual([]);
    expect(loop.samples.length).toBeGreaterThan(300);

    const lines = logLines(serve);
    const reloaded = lines.filter((l) => l.msg === "configuration reloaded");
    expect(reloaded).toHaveLength(1);
    expect(reloaded[0]).toMatchObject({ level: "info", trigger: "SIGHUP" });
    const rejected = lines.filter((l) => l.msg === "configuration rejected; keeping the running one");
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ level: "error", trigger: "SIGHUP" });
    const problems = rejected[0]!.problems ?? [];
    expect(problems.map((p) => p.path).sort()).toEqual(
      ["plans.pro.limits[0].routes[0]", "routes[0].upstream.url", "server.colour"].sort(),
    );
    for (const problem of problems) {
      expect(problem.line).toBeGreaterThan(0);
      expect(problem.message.length).toBeGreaterThan(0);
    }
    expect(JSON.stringify(problems)).toMatch(/colour/);
    expect(JSON.stringify(problems)).toMatch(/nowhere/);
    // A reload of plans and limits asks for no restart.
    expect(lines.some((l) => l.msg === "these sections change only at the next restart")).toBe(false);

    // Still the last good configuration after all that.
    const last = await call(serve.proxyPort, "/api/after", { key: key.key });
    expect(legacyHeaders(last).limit).toBe(7);
  });
});

describe("reload.watch", () => {
  it("reloads when the file is rewritten in place or replaced by rename, without a signal", async () => {
    const namespace = uniqueNamespace("reload-watch");
    namespaces.push(namespace);
    const file = join(dir, "watched.yaml");
    await writeFile(file, configText(namespace, 1_000, { watch: true }));
    running = await startServe(file);
    const serve = running;
    const key = await createKey(serve.adminUrl, { label: "Watched", plan: "pro" });
    const limitNow = async () => legacyHeaders(await call(serve.proxyPort, "/api/w", { key: key.key })).limit;
    expect(await limitNow()).toBe(1_000);

    await writeFile(file, configText(namespace, 2_000, { watch: true }));
    await waitUntil("the in-place rewrite to be applied", async () => (await limitNow()) === 2_000, {
      timeoutMs: 5_000,
      intervalMs: 50,
    });

    // Editors and ConfigMap updates replace the file by rename.
    const next = join(dir, "watched.yaml.tmp");
    await writeFile(next, configText(namespace, 3_000, { watch: true }));
    await rename(next, file);
    await waitUntil("the renamed file to be applied", async () => (await limitNow()) === 3_000, {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
    expect(await reloads(serve, "rejected")).toBe(0);
    expect(await reloads(serve, "ok")).toBeGreaterThanOrEqual(2);
  });
});
