/**
 * The real `keygate` command (dist/cli/main.js, built by the integration
 * project's globalSetup) as a child process: one-shot commands with
 * `runCli`, and a long-running `keygate serve` with `startServe`.
 *
 * Always asynchronous: a test that runs a gateway in its own process must
 * keep its event loop free while the CLI talks to it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Absolute path of the built CLI. */
export const CLI_PATH = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface CliResult {
  /** Exit status; null when a signal ended the process. */
  code: number | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * Runs `keygate <args>` to completion. The environment is the test's own
 * minus any KEYGATE_* / REDIS_URL variables, plus `env`.
 */
export function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], {
      env: { ...cleanEnv(), ...env },
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
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, durationMs: Date.now() - started });
    });
  });
}

/** `process.env` without variables that would change what the CLI talks to. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined || name.startsWith("KEYGATE_") || name === "REDIS_URL") continue;
    env[name] = value;
  }
  return env;
}

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  proxyPort: number;
  adminPort: number;
  proxyUrl: string;
  adminUrl: string;
  /** Everything written to stdout so far (JSON log lines). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (by pid, to this process only) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();
let exitHook = false;

/**
 * Starts `keygate serve --config <file>` and resolves once its
 * "keygate listening" log line has told which ports it bound (so port 0 works).
 * That line must reach stdout at once: `serve` flushes the buffered log
 * destination right after listening (src/cli/serve.ts).
 */
export async function startServe(configFile: string, timeoutMs = 15_000): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI_PATH, "serve", "--config", configFile], {
    env: cleanEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  if (!exitHook) {
    exitHook = true;
    process.once("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
  }
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });

  const ports = await new Promise<{ proxy: number; admin: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `keygate serve wrote no "keygate listening" line on stdout within ${timeoutMs} ms ` +
            `(stdout: ${JSON.stringify(stdout.slice(-2_000))}, stderr: ${JSON.stringify(stderr.slice(-2_000))})`,
        ),
      );
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      for (const line of stdout.split("\n")) {
        if (!line.includes('"keygate listening"')) continue;
        try {
          const parsed = JSON.parse(line) as { proxy: { port: number }; admin: { port: number } };
          clearTimeout(timer);
          resolve({ proxy: parsed.proxy.port, admin: parsed.admin.port });
          return;
        } catch {
          // an incomplete line: wait for the rest
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`keygate serve exited (code ${code}, signal ${signal}) before listening: ${stderr}`));
    });
  });

  return {
    child,
    pid: child.pid as number,
    proxyPort: ports.proxy,
    adminPort: ports.admin,
    proxyUrl: `http://127.0.0.1:${ports.proxy}`,
    adminUrl: `http://127.0.0.1:${ports.admin}`,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
