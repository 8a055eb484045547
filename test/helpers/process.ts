/**
 * The built CLI (`dist/cli/main.js`, built by the integration project's
 * globalSetup) as a real child process.
 *
 * `startServeProcess` runs `keygate serve` with both listeners on port 0 and
 * learns the ports the OS picked from the "keygate listening" log line (which
 * `serve` flushes at once; other lines may sit in the stdout buffer until exit).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

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
 * Starts `keygate serve` with `body` (a config without `listeners` and
 * `store`) and resolves once it has logged the ports it listens on.
 */
export async function startServeProcess(body: string, timeoutMs = 10_000): Promise<ServeProcess> {
  const dir = await mkdtemp(join(tmpdir(), "keygate-serve-"));
  const file = join(dir, "gateway.yaml");
  await writeFile(
    file,
    `listeners:
  proxy: { host: 127.0.0.1, port: 0 }
  admin: { host: 127.0.0.1, port: 0 }
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
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<Exit>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const ports = await new Promise<{ proxy: number; admin: number }>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "keygate listening" line within ${timeoutMs} ms`)),
        timeoutMs,
      );
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        const complete = stdout.split("\n").slice(0, -1); // the last piece may be a partial line
        for (const line of complete) {
          if (!line.includes('"keygate listening"')) continue;
          const parsed = JSON.parse(line) as { proxy: { port: number }; admin: { port: number } };
          clearTimeout(timer);
          resolve({ proxy: parsed.proxy.port, admin: parsed.admin.port });
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`keygate serve exited early (code ${code}, signal ${signal})`));
      });
    });
    return {
      child,
      proxyPort: ports.proxy,
      adminPort: ports.admin,
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw new Error(`${(error as Error).message}\nstderr: ${stderr}\nstdout: ${stdout}`);
  }
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
