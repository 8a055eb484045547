/**
 * The built CLI (`dist/cli/main.js`, built by the integration project's
 * globalSetup) as a real child process.
 *
 * `startServeProcess` does not rely on the "keygate listening" log line to
 * learn the ports: `keygate serve` logs through an asynchronously buffered
 * stdout destination, so that line may only appear at exit. It picks free
 * ports itself and waits for /healthz instead (retrying on the rare port
 * collision).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { unusedPort } from "./upstream.js";

export const CLI = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CliRun extends Exit {
  stdout: string;
  stderr: string;
}

/** The test's environment without variables that would change what the CLI reads. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!name.startsWith("KEYGATE_") && name !== "REDIS_URL") env[name] = value;
  return { ...env, ...extra };
}

/** Runs `keygate <args>` to completion (killed after `timeoutMs`). */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: childEnv(env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface ServeProcess {
  child: ChildProcess;
  proxyPort: number;
  adminPort: number;
  stdout(): string;
  stderr(): string;
  /** Settles when the process has exited. */
  exited: Promise<Exit>;
  /** SIGKILLs the process if it still runs and removes its files. Safe to call twice. */
  cleanup(): Promise<void>;
}

/**
 * Starts `keygate serve` on free ports with `body` (a config without
 * `listeners` and `store`) and resolves once its admin /healthz answers.
 */
export async function startServeProcess(body: string, attempts = 3): Promise<ServeProcess> {
  const dir = await mkdtemp(join(tmpdir(), "keygate-serve-"));
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const proxyPort = await unusedPort();
    const adminPort = await unusedPort();
    const file = join(dir, "gateway.yaml");
    await writeFile(
      file,
      `listeners:
  proxy: { host: 127.0.0.1, port: ${proxyPort} }
  admin: { host: 127.0.0.1, port: ${adminPort} }
store:
  type: embedded
  embedded: { path: ${JSON.stringify(join(dir, "keys.json"))} }
${body}`,
    );
    const child = spawn(process.execPath, [CLI, "serve", "--config", file], {
      env: childEnv({}),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<Exit>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const handle: ServeProcess = {
      child,
      proxyPort,
      adminPort,
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      cleanup: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        await exited;
        await rm(dir, { recursive: true, force: true });
      },
    };
    try {
      await waitForHealth(adminPort, exited);
      return handle;
    } catch (error) {
      lastError = new Error(`${(error as Error).message}\nstderr: ${stderr}\nstdout: ${stdout}`);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      if (!/EADDRINUSE/.test(stderr + stdout)) break;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

/** GETs `path` on 127.0.0.1:`port`; resolves with status and body. */
export function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function waitForHealth(adminPort: number, exited: Promise<Exit>, timeoutMs = 10_000): Promise<void> {
  let gone: Exit | undefined;
  void exited.then((exit) => {
    gone = exit;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`keygate serve exited early (code ${gone.code}, signal ${gone.signal})`);
    try {
      if ((await get(adminPort, "/healthz")).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`keygate serve did not answer /healthz within ${timeoutMs} ms`);
}
