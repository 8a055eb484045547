/**
 * `keygate serve` from a config body in a temporary directory, on top of
 * the process helpers in cli.ts, and a minimal HTTP GET.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServeProcess as RunningServe, startServe } from "./cli.js";

export interface ServeProcess extends RunningServe {
  /** SIGKILLs the process if it still runs and removes its files. Safe to call twice. */
  cleanup(): Promise<void>;
}

/**
 * Starts `keygate serve` with `body` (a config without `listeners` and
 * `store`: both listeners on port 0, an embedded store in a temporary directory).
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
  let running: RunningServe;
  try {
    running = await startServe(file, timeoutMs);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    ...running,
    cleanup: async () => {
      if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill("SIGKILL");
      await running.exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
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
