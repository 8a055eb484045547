/**
 * The control plane's HTTP handler: liveness, readiness and metrics. It runs
 * on its own listener, never on the proxy port.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "prom-client";

export interface ReadinessCheck {
  readonly name: string;
  /** Resolves true when this dependency can serve; must settle within its own time budget. */
  check(): Promise<boolean> | boolean;
}

/** A sub-API mounted on the admin listener; resolves false when the path is not its own. */
export type AdminApi = (
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: URLSearchParams,
) => Promise<boolean>;

export interface AdminOptions {
  registry: Registry;
  api?: AdminApi;
  readiness: () => readonly ReadinessCheck[];
  draining: () => boolean;
}

export function createAdminHandler(options: AdminOptions) {
  return async function handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const queryAt = url.indexOf("?");
    const path = queryAt === -1 ? url : url.slice(0, queryAt);
    try {
      if (path === "/healthz") return json(res, 200, { status: "ok" });
      if (path === "/readyz") return json(res, ...(await readiness(options)));
      if (path === "/metrics") {
        res.setHeader("content-type", options.registry.contentType);
        res.end(await options.registry.metrics());
        return;
      }
      if (
        options.api &&
        (await options.api(req, res, path, new URLSearchParams(queryAt === -1 ? "" : url.slice(queryAt))))
      ) {
        return;
      }
      json(res, 404, { error: { code: "NOT_FOUND", message: "Unknown admin endpoint" } });
    } catch (error) {
      json(res, 500, { error: { code: "INTERNAL_ERROR", message: (error as Error).message } });
    }
  };
}

async function readiness(options: AdminOptions): Promise<[number, unknown]> {
  if (options.draining()) return [503, { status: "draining" }];
  const checks = options.readiness();
  const results = await Promise.all(
    checks.map(
      async (c) =>
        [
          c.name,
          await Promise.resolve()
            .then(() => c.check())
            .catch(() => false),
        ] as const,
    ),
  );
  const failing = results.filter(([, ok]) => !ok).map(([name]) => name);
  return failing.length === 0 ? [200, { status: "ready" }] : [503, { status: "not ready", failing }];
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    "cache-control": "no-store",
  });
  res.end(payload);
}
