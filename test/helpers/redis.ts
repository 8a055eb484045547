/**
 * Real Redis servers for the tests: never the machine's shared Redis on 6379.
 *
 * `startRedis()` picks, in order:
 *   1. `REDIS_URL` from the environment (kind "env"; stopping it does nothing);
 *   2. a throwaway Redis container through testcontainers, when a Docker engine answers (kind "container");
 *   3. a `redis-server` child process on a port the OS picked, bound to 127.0.0.1, keeping nothing on
 *      disk (kind "process").
 * `startDedicatedRedis()` skips `REDIS_URL` and always owns its server, so a test can stop it
 * (`pause()`), start it again on the same port (`resume()`), or both at once (`restart()`).
 *
 * Environment knobs:
 *   - `REDIS_URL`: use this server for `startRedis()` (it must be one the tests may write to).
 *   - `KEYGATE_TEST_REDIS=process|container`: skip the other way of owning a server.
 *   - `KEYGATE_TEST_REDIS_IMAGE`: container image (default `redis:7-alpine`).
 *   - `REDIS_SERVER_BIN`: path of the `redis-server` binary (default: looked up on PATH).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants, rmSync } from "node:fs";
import { access, mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import type { StartedTestContainer } from "testcontainers";

export type RedisKind = "env" | "container" | "process";

export interface RedisHandle {
  /** `redis://host:port` (with credentials and db when REDIS_URL had them). */
  url: string;
  host: string;
  port: number;
  kind: RedisKind;
  /** Stops the server and frees what it used; a no-op for kind "env". Safe to call twice. */
  stop(): Promise<void>;
  /** stop then start again on the same port, data lost */
  restart?(): Promise<void>;
  /** stop the server but keep the handle so it can be started again (for outage tests) */
  pause?(): Promise<void>;
  /** start a paused server again on the same port and wait until it answers PING */
  resume?(): Promise<void>;
}

/** A server this process owns: it can always be paused, resumed and restarted. */
export interface DedicatedRedisHandle extends RedisHandle {
  kind: "container" | "process";
  restart(): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const DOCKER_PROBE_TIMEOUT_MS = 5_000;
const CONTAINER_STARTUP_TIMEOUT_MS = 120_000;
const DEFAULT_IMAGE = "redis:7-alpine";

/** REDIS_URL if set, else a container or a child process of our own. */
export async function startRedis(): Promise<RedisHandle> {
  const fromEnv = process.env.REDIS_URL?.trim();
  if (fromEnv) return envHandle(fromEnv);
  return startOwned(["REDIS_URL: not set"]);
}

/** Always a server of our own (container or process), whatever REDIS_URL says, so it can be stopped. */
export async function startDedicatedRedis(): Promise<DedicatedRedisHandle> {
  const note = process.env.REDIS_URL?.trim()
    ? "REDIS_URL: ignored (a dedicated server must be one this test can stop)"
    : "REDIS_URL: not needed (dedicated server)";
  return startOwned([note]);
}

/** A fresh key prefix such as `test:3f9a1c0b2d4e:`, so tests sharing one Redis never see each other's keys. */
export function uniqueNamespace(prefix = "test"): string {
  const base = prefix.replace(/:+$/, "");
  return `${base}:${randomBytes(6).toString("hex")}:`;
}

/** Resolves once `host:port` answers PING with PONG, or rejects after `timeoutMs`. */
export async function waitForPing(host: string, port: number, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      await pingOnce(host, port, Math.min(1_000, Math.max(50, deadline - Date.now())));
      return;
    } catch (error) {
      last = error;
      await sleep(25);
    }
  }
  throw new Error(`Redis at ${host}:${port} did not answer PING within ${timeoutMs} ms: ${messageOf(last)}`);
}

// ---------------------------------------------------------------------------------------------------------
// kind "env"

function envHandle(raw: string): RedisHandle {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new Error(`REDIS_URL is not a URL: ${JSON.stringify(raw)} (expected redis://host:port)`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new Error(`REDIS_URL must start with redis:// or rediss://, got ${JSON.stringify(raw)}`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  const port = parsed.port ? Number(parsed.port) : 6379;
  return { url: raw, host, port, kind: "env", stop: async () => {} };
}

// ---------------------------------------------------------------------------------------------------------
// owned servers: container first, then process

async function startOwned(tried: string[]): Promise<DedicatedRedisHandle> {
  const mode = process.env.KEYGATE_TEST_REDIS?.trim().toLowerCase() || "auto";
  if (mode !== "auto" && mode !== "container" && mode !== "process") {
    throw new Error(
      `KEYGATE_TEST_REDIS must be "container" or "process" (or unset), got ${JSON.stringify(mode)}`,
    );
  }

  if (mode === "process") {
    tried.push("Docker: skipped (KEYGATE_TEST_REDIS=process)");
  } else {
    const dockerProblem = await probeDocker();
    if (dockerProblem === undefined) {
      try {
        return await startContainer();
      } catch (error) {
        if (mode === "container") throw error;
        tried.push(`Docker: answered, but the Redis container did not start: ${messageOf(error)}`);
        console.warn(`[test redis] container failed, falling back to redis-server: ${messageOf(error)}`);
      }
    } else {
      tried.push(`Docker: ${dockerProblem}`);
    }
  }

  if (mode === "container") {
    throw unavailable(tried, "KEYGATE_TEST_REDIS=container was set, so redis-server was not tried");
  }
  const bin = await findRedisServer();
  if (!bin.path) {
    tried.push(`redis-server: ${bin.reason}`);
    throw unavailable(tried);
  }
  return startProcess(bin.path);
}

function unavailable(tried: string[], extra?: string): Error {
  return new Error(
    [
      "No Redis server is available for the tests. Tried, in order:",
      ...tried.map((line) => `  - ${line}`),
      ...(extra ? [`  (${extra})`] : []),
      "Fix one of these:",
      "  - install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis),",
      "    or point REDIS_SERVER_BIN at the binary;",
      "  - start a Docker engine (testcontainers will run a throwaway Redis container);",
      "  - set REDIS_URL=redis://host:port to a Redis the tests may write to (not used by",
      "    startDedicatedRedis(), which needs a server it can stop).",
      "The shared Redis on 127.0.0.1:6379 is never used on purpose.",
    ].join("\n"),
  );
}

// ---------------------------------------------------------------------------------------------------------
// kind "container"

/** undefined when a Docker engine answers, else why not. Asked once per process. */
let dockerProbe: Promise<string | undefined> | undefined;
function probeDocker(): Promise<string | undefined> {
  dockerProbe ??= askDocker();
  return dockerProbe;
}

async function askDocker(): Promise<string | undefined> {
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    await withTimeout(
      getContainerRuntimeClient(),
      DOCKER_PROBE_TIMEOUT_MS,
      "no answer from the Docker engine",
    );
    return undefined;
  } catch (error) {
    return `no engine answered (${messageOf(error)})`;
  }
}

async function startContainer(): Promise<DedicatedRedisHandle> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import("testcontainers");
  const image = process.env.KEYGATE_TEST_REDIS_IMAGE?.trim() || DEFAULT_IMAGE;
  // A stopped container that starts again gets a new random host port unless the binding is fixed,
  // so bind a port the OS just told us is free: resume() then comes back on the same one.
  const exposed = { container: 6379, host: await freePort() };
  const container: StartedTestContainer = await new GenericContainer(image)
    .withCommand(["redis-server", "--save", "", "--appendonly", "no"])
    .withExposedPorts(exposed)
    .withWaitStrategy(Wait.forLogMessage("Ready to accept connections"))
    .withStartupTimeout(CONTAINER_STARTUP_TIMEOUT_MS)
    .start();
  const host = container.getHost();
  const port = container.getMappedPort(6379);
  await waitForPing(host, port);

  let state: "running" | "paused" | "stopped" = "running";
  const raw = async () => {
    const client = await getContainerRuntimeClient();
    return { client, docker: client.container.getById(container.getId()) };
  };
  const pause = async () => {
    if (state !== "running") return;
    const { client, docker } = await raw();
    await client.container.stop(docker, { timeout: 1_000 });
    state = "paused";
  };
  const resume = async () => {
    if (state === "stopped") throw new Error("this Redis container was stopped for good");
    if (state === "running") return;
    const { client, docker } = await raw();
    await client.container.start(docker);
    state = "running";
    await waitForPing(host, port, 30_000);
  };
  return {
    url: `redis://${urlHost(host)}:${port}`,
    host,
    port,
    kind: "container",
    pause,
    resume,
    restart: async () => {
      await pause();
      await resume();
    },
    stop: async () => {
      if (state === "stopped") return;
      state = "stopped";
      await container.stop({ timeout: 1_000 });
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// kind "process"

async function findRedisServer(): Promise<{ path?: string; reason: string }> {
  const explicit = process.env.REDIS_SERVER_BIN?.trim();
  if (explicit) {
    if (await isExecutable(explicit)) return { path: explicit, reason: "" };
    return { reason: `REDIS_SERVER_BIN=${explicit} is not an executable file` };
  }
  const dirs = [
    ...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean),
    "/usr/bin",
    "/usr/local/bin",
    "/usr/sbin",
    "/opt/homebrew/bin",
  ];
  for (const dir of new Set(dirs)) {
    const candidate = path.join(dir, "redis-server");
    if (await isExecutable(candidate)) return { path: candidate, reason: "" };
  }
  return { reason: "not found on PATH, nor in /usr/bin, /usr/local/bin, /usr/sbin or /opt/homebrew/bin" };
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs redis-server under a tiny sh watchdog that holds our end of a pipe on its stdin: when the pipe
 * closes (we call `terminate()`, or this process exits or is killed, even with SIGKILL), the
 * watchdog sends redis-server SIGTERM, so a test run that dies never leaves a server behind.
 * The sh exits when redis-server does, with its status.
 */
const WATCHDOG = [
  "exec 3<&0",
  '"$0" "$@" </dev/null 3<&- &',
  "pid=$!",
  "trap 'kill -TERM $pid 2>/dev/null' TERM INT HUP",
  "( while read -r _; do :; done; kill -TERM $pid 2>/dev/null ) <&3 >/dev/null 2>&1 &",
  "exec 3<&-",
  "wait $pid; status=$?",
  "while kill -0 $pid 2>/dev/null; do wait $pid; status=$?; done",
  "exit $status",
].join("\n");

/** Data folders of servers not stopped yet, removed if this process exits without stopping them. */
const liveDirs = new Set<string>();
let exitHookInstalled = false;
function trackDir(dir: string): void {
  liveDirs.add(dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

interface RunningServer {
  child: ChildProcess;
  exited: Promise<void>;
  output(): string;
}

function spawnServer(bin: string, port: number, dir: string): RunningServer {
  // Everything on the command line: no config file, nothing kept on disk, loopback only.
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--logfile",
    "",
  ];
  // detached: its own process group, so terminate() can SIGKILL the whole lot if SIGTERM is not enough.
  const child = spawn("/bin/sh", ["-c", WATCHDOG, bin, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.stdin?.on("error", () => {}); // EPIPE once the watchdog is gone
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", (error) => {
      keep(Buffer.from(`\nspawn error: ${error.message}\n`));
      resolve();
    });
  });
  return { child, exited, output: () => output };
}

/** Spawns and waits for PING; rejects (with the server's output) if it exits or never answers. */
async function launch(bin: string, port: number, dir: string): Promise<RunningServer> {
  const server = spawnServer(bin, port, dir);
  let died = false;
  void server.exited.then(() => {
    died = true;
  });
  const ready = waitForPing("127.0.0.1", port);
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    server.exited.then(() => "exited" as const),
  ]).catch((error: unknown) => error);
  if (outcome === "ready" && !died) return server;
  ready.catch(() => {});
  await terminate(server);
  const why = outcome === "exited" ? "exited before answering PING" : messageOf(outcome);
  const error = new Error(`${bin} on 127.0.0.1:${port} ${why}; its output:\n${server.output().trim()}`);
  (error as Error & { addressInUse?: boolean }).addressInUse = /address already in use/i.test(
    server.output(),
  );
  throw error;
}

async function terminate(server: RunningServer): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    await server.exited;
    return;
  }
  child.stdin?.end(); // the watchdog sees EOF and sends redis-server SIGTERM
  const done = await Promise.race([server.exited.then(() => true), sleep(5_000).then(() => false)]);
  if (!done) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
    await server.exited;
  }
}

async function startProcess(bin: string): Promise<DedicatedRedisHandle> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "keygate-test-redis-"));
  trackDir(dir);
  let port = 0;
  let server: RunningServer | undefined;
  try {
    // The free port can be taken between our check and redis' bind: try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        server = await launch(bin, port, dir);
        break;
      } catch (error) {
        if (attempt >= 5 || !(error as { addressInUse?: boolean }).addressInUse) throw error;
      }
    }
  } catch (error) {
    liveDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  let stopped = false;
  const pause = async () => {
    if (!server) return;
    const current = server;
    server = undefined;
    await terminate(current);
  };
  const resume = async () => {
    if (stopped) throw new Error("this redis-server was stopped for good");
    if (server) return;
    // The port was ours a moment ago; something else may have grabbed it briefly, so retry a while.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        server = await launch(bin, port, dir);
        return;
      } catch (error) {
        if (Date.now() > deadline || !(error as { addressInUse?: boolean }).addressInUse) throw error;
        await sleep(100);
      }
    }
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    host: "127.0.0.1",
    port,
    kind: "process",
    pause,
    resume,
    restart: async () => {
      await pause();
      await resume();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await pause();
      liveDirs.delete(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// small tools

/** A port the OS says is free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close((error) => (error ? reject(error) : port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

function pingOnce(host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let reply = "";
    const finish = (error?: Error) => {
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket.setTimeout(timeoutMs, () => finish(new Error("timed out")));
    socket.once("error", (error) => finish(error));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (!reply.includes("\r\n")) return;
      if (reply.startsWith("+PONG")) finish();
      else finish(new Error(`unexpected reply ${JSON.stringify(reply.trim())}`));
    });
    socket.once("close", () => finish(new Error("connection closed")));
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
    timer.unref();
  });
  promise.catch(() => {});
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Test Redis servers keep nothing on disk, so a stop loses the data where a
 * production Redis would keep it. Snapshots every key of `namespace`; the
 * returned function puts them back (call it right after a restart).
 */
export async function snapshotNamespace(url: string, namespace: string): Promise<() => Promise<void>> {
  const client = new Redis(url);
  const keys = await client.keys(`${namespace}*`);
  const dumps = await Promise.all(keys.map(async (key) => [key, await client.dumpBuffer(key)] as const));
  client.disconnect();
  return async () => {
    const restorer = new Redis(url);
    for (const [key, dump] of dumps) if (dump) await restorer.restore(key, 0, dump, "REPLACE");
    restorer.disconnect();
  };
}

export interface NamespaceWatch {
  /** Arguments of every command that named the namespace (markers excluded); clear it with `length = 0`. */
  readonly seen: string[][];
  /** Resolves once every command sent before this call has been seen (a marker's round trip). */
  caughtUp(): Promise<void>;
  stop(): Promise<void>;
}

/** Watches, with MONITOR, every command that names `namespace`. */
export async function watchNamespace(url: string, namespace: string): Promise<NamespaceWatch> {
  const client = new Redis(url);
  const monitor = await client.monitor();
  const seen: string[][] = [];
  const markers = new Set<string>();
  const markerPrefix = `${namespace}marker:`;
  monitor.on("monitor", (_time: string, args: string[]) => {
    const marker = args.find((arg) => arg.startsWith(markerPrefix));
    if (marker !== undefined) markers.add(marker);
    else if (args.some((arg) => arg.includes(namespace))) seen.push(args);
  });
  return {
    seen,
    async caughtUp() {
      const marker = `${markerPrefix}${randomBytes(6).toString("hex")}`;
      await client.get(marker);
      const deadline = Date.now() + 5_000;
      while (!markers.has(marker)) {
        if (Date.now() > deadline) throw new Error("MONITOR never showed the marker command");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async stop() {
      monitor.disconnect();
      client.disconnect();
    },
  };
}
