/**
 * `keygate demo`: a working gateway in one command on a fresh machine. It
 * starts a built-in echo upstream, keygate on the embedded store (in a
 * temporary directory), creates a key through the admin API, and prints a
 * curl line that works. Ctrl-C stops it and removes the temporary data.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../config/load.js";
import { createLogger } from "../observability/logger.js";
import { createGateway } from "../server/create.js";

/** Echoes what the upstream received, so the demo shows the identity headers keygate adds. */
function startEchoUpstream(): Promise<Server> {
  const server = createServer((req, res) => {
    const body = JSON.stringify(
      {
        upstream: "keygate demo echo",
        method: req.method,
        path: req.url,
        key_id: req.headers["x-keygate-key-id"],
        plan: req.headers["x-keygate-plan"],
        label: decodeURIComponent(String(req.headers["x-keygate-key-label"] ?? "")),
        authorization_forwarded: req.headers.authorization !== undefined,
      },
      null,
      2,
    );
    res.writeHead(200, { "content-type": "application/json" }).end(`${body}\n`);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** `preferred` when it is free, else any free port. */
function freePort(preferred: number): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => probe.listen(0, "127.0.0.1"));
    probe.once("listening", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
    probe.listen(preferred, "127.0.0.1");
  });
}

export async function demo(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), "keygate-demo-"));
  const upstream = await startEchoUpstream();
  const token = randomBytes(24).toString("hex");
  const proxyPort = await freePort(Number(process.env.KEYGATE_PORT ?? 8080));
  const adminPort = await freePort(Number(process.env.KEYGATE_ADMIN_PORT ?? 9090));
  const yaml = `
listeners:
  proxy: { host: 127.0.0.1, port: ${proxyPort} }
  admin: { host: 127.0.0.1, port: ${adminPort} }
store:
  type: embedded
  embedded: { path: ${JSON.stringify(join(dataDir, "keys.json"))} }
plans:
  demo: { api_access: true }
admin:
  tokens: ["${token}"]
routes:
  - name: echo
    match: { path_prefix: / }
    upstream: { url: "http://127.0.0.1:${(upstream.address() as AddressInfo).port}" }
`;
  const config = parseConfig(yaml, "demo", {});
  const logger = createLogger({ level: "info", destination: undefined });
  const { gateway } = await createGateway(config, { logger });
  const { proxy, admin } = await gateway.listen();
  const adminUrl = `http://127.0.0.1:${admin.port}`;
  const created = await fetch(`${adminUrl}/v1/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ label: "Demo key", plan: "demo" }),
  });
  const { key } = (await created.json()) as { key: string };
  const proxyUrl = `http://127.0.0.1:${proxy.port}`;
  process.stderr.write(`
keygate demo is running (embedded store in ${dataDir}).

  proxy  ${proxyUrl}  ->  built-in echo upstream
  admin  ${adminUrl}  (/healthz, /readyz, /metrics, /v1/keys)

Your API key (shown once; keygate stores only its SHA-256):
  ${key}

Try it:
  curl -H "Authorization: Bearer ${key}" ${proxyUrl}/hello
  curl -i ${proxyUrl}/hello                      # 401: no key

Manage keys:
  export KEYGATE_ADMIN_URL=${adminUrl} KEYGATE_ADMIN_TOKEN=${token}
  node ${process.argv[1]} keys list

Ctrl-C stops the demo and deletes its data.
\n`);

  const stop = async () => {
    await gateway.shutdown();
    upstream.close();
    await rm(dataDir, { recursive: true, force: true });
    logger.flush(() => process.exit(0));
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
}
