/**
 * TLS on the proxy listener and to HTTPS upstreams: a test CA signs one
 * certificate for 127.0.0.1 (made with openssl for this run); the upstream
 * is verified against `tls.ca_file`, and without it the certificate is
 * refused (verification is on by default) with a 502.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer, request as httpsRequest, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";

const dir = mkdtempSync(join(tmpdir(), "keygate-tls-"));
const file = (name: string) => join(dir, name);

function makeCertificates(): void {
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=keygate test CA",
    "-keyout",
    file("ca.key"),
    "-out",
    file("ca.pem"),
  );
  writeFileSync(file("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    file("server.key"),
    "-out",
    file("server.csr"),
  );
  openssl(
    "x509",
    "-req",
    "-in",
    file("server.csr"),
    "-CA",
    file("ca.pem"),
    "-CAkey",
    file("ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    file("san.ext"),
    "-out",
    file("server.pem"),
  );
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: "127.0.0.1", port, path, ca: readFileSync(file("ca.pem")), agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

let upstream: Server;
let gateway: TestGateway;

beforeAll(async () => {
  makeCertificates();
  upstream = createHttpsServer(
    { cert: readFileSync(file("server.pem")), key: readFileSync(file("server.key")) },
    (req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ path: req.url }));
    },
  );
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const upstreamUrl = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  gateway = await startGateway(`
listeners:
  proxy: { host: 127.0.0.1, port: 0, tls: { cert_file: ${file("server.pem")}, key_file: ${file("server.key")} } }
  admin: { host: 127.0.0.1, port: 0 }
routes:
  - name: trusted
    match: { path_prefix: /trusted }
    auth: { public: true }
    upstream: { url: "${upstreamUrl}", tls: { ca_file: ${file("ca.pem")} } }
  - name: unverified-ca
    match: { path_prefix: /default }
    auth: { public: true }
    upstream: { url: "${upstreamUrl}" }
`);
});

afterAll(async () => {
  await gateway?.stop();
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe("TLS", () => {
  it("serves HTTPS on the proxy listener and verifies the upstream against its ca_file", async () => {
    const answer = await get(gateway.addresses.proxy.port, "/trusted/x");
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ path: "/trusted/x" });
  });

  it("refuses an upstream certificate it cannot verify (verification is on by default)", async () => {
    const answer = await get(gateway.addresses.proxy.port, "/default/x");
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body)).toEqual({
      error: { code: "BAD_GATEWAY", message: "Upstream unavailable" },
    });
    const line = gateway.logLines().find((l) => l.route === "unverified-ca" && l.status === 502);
    expect(String(line?.error_detail)).toMatch(/certificate|UNABLE_TO_VERIFY|self.signed/i);
  });
});
