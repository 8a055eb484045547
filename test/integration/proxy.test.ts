/**
 * The forwarding core: bodies stream through in both directions (chunked,
 * large, byte-exact, never buffered whole), and the upstream connection pool
 * reuses one TCP connection for sequential requests.
 */
import { createHash, randomBytes } from "node:crypto";
import { Agent, request } from "node:http";
import { connect } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { send, startUpstream, type TestUpstream } from "../helpers/upstream.js";

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;

let gateway: TestGateway;
let upstream: TestUpstream;
let proxyPort: number;
const agents: Agent[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startGateway(`
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
    auth: { public: true }
`);
  proxyPort = gateway.addresses.proxy.port;
});

afterAll(async () => {
  await gateway.stop();
  await upstream.close();
});

afterEach(() => {
  for (const agent of agents.splice(0)) agent.destroy();
});

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Deterministic response body of `size` bytes. */
function pattern(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + (i >> 11)) & 0xff;
  return out;
}

/** Fails the test instead of hanging when `promise` never settles (e.g. a body buffered whole). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

describe("streaming", () => {
  it("carries an 8 MiB chunked body each way byte for byte", async () => {
    const upload = randomBytes(8 * MiB);
    const download = pattern(8 * MiB);
    upstream.setHandler((req, res) => {
      const hash = createHash("sha256");
      let received = 0;
      req.on("data", (chunk: Buffer) => {
        hash.update(chunk);
        received += chunk.length;
      });
      req.on("end", async () => {
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "x-received-sha256": hash.digest("hex"),
          "x-received-bytes": String(received),
        });
        for (let offset = 0; offset < download.length; offset += CHUNK) {
          if (!res.write(download.subarray(offset, offset + CHUNK)))
            await new Promise((resolve) => res.once("drain", resolve));
        }
        res.end();
      });
    });

    const result = await new Promise<{ headers: Record<string, unknown>; hash: string; bytes: number }>(
      (resolve, reject) => {
        const req = request(
          { host: "127.0.0.1", port: proxyPort, method: "POST", path: "/api/upload", agent: false },
          (res) => {
            const hash = createHash("sha256");
            let bytes = 0;
            res.on("data", (chunk: Buffer) => {
              hash.update(chunk);
              bytes += chunk.length;
            });
            res.on("end", () => resolve({ headers: res.headers, hash: hash.digest("hex"), bytes }));
            res.on("error", reject);
          },
        );
        req.on("error", reject);
        // No Content-Length: Node sends the body chunked.
        (async () => {
          for (let offset = 0; offset < upload.length; offset += CHUNK) {
            if (!req.write(upload.subarray(offset, offset + CHUNK)))
              await new Promise((resolve) => req.once("drain", resolve));
          }
          req.end();
        })();
      },
    );

    const seen = upstream.requests.at(-1)!;
    expect(seen.method).toBe("POST");
    expect(seen.headers["transfer-encoding"]).toBe("chunked");
    expect(seen.headers["content-length"]).toBeUndefined();
    expect(result.headers["x-received-bytes"]).toBe(String(upload.length));
    expect(result.headers["x-received-sha256"]).toBe(sha256(upload));

    expect(result.headers["transfer-encoding"]).toBe("chunked");
    expect(result.bytes).toBe(download.length);
    expect(result.hash).toBe(sha256(download));
  });

  it("passes the response on as it arrives instead of buffering it", async () => {
    let clientGotFirstPart!: () => void;
    const firstPartSeen = new Promise<void>((resolve) => {
      clientGotFirstPart = resolve;
    });
    upstream.setHandler((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first;");
      // The rest only once the client has the first part: a buffering gateway never delivers it.
      void firstPartSeen.then(() => res.end("second"));
    });

    const body = await within(
      new Promise<string>((resolve, reject) => {
        const req = request(
          { host: "127.0.0.1", port: proxyPort, path: "/api/stream", agent: false },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => {
              text += chunk;
              if (text.startsWith("first;")) clientGotFirstPart();
            });
            res.on("end", () => resolve(text));
          },
        );
        req.on("error", reject);
        req.end();
      }),
      5_000,
      "the first response chunk reaching the client before the upstream ended",
    );
    expect(body).toBe("first;second");
  });

  it("passes the request body on as it arrives instead of buffering it", async () => {
    let upstreamGotFirstPart!: () => void;
    const firstPartSeen = new Promise<void>((resolve) => {
      upstreamGotFirstPart = resolve;
    });
    upstream.setHandler((req, res) => {
      let text = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        text += chunk;
        if (text.startsWith("first;")) upstreamGotFirstPart();
      });
      req.on("end", () => res.end(text));
    });

    const body = await within(
      new Promise<string>((resolve, reject) => {
        const req = request(
          { host: "127.0.0.1", port: proxyPort, method: "PUT", path: "/api/stream", agent: false },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => {
              text += chunk;
            });
            res.on("end", () => resolve(text));
          },
        );
        req.on("error", reject);
        req.write("first;");
        // The rest only once the upstream has the first part.
        void firstPartSeen.then(() => req.end("second"));
      }),
      5_000,
      "the first request chunk reaching the upstream before the client ended",
    );
    expect(body).toBe("first;second");
  });

  it("answers HEAD with the upstream's headers and no body", async () => {
    upstream.setHandler((req, res) => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": 11, "x-method": req.method });
      res.end(req.method === "HEAD" ? undefined : "hello world");
    });
    const res = await send(proxyPort, { method: "HEAD", path: "/api/head" });
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe("11");
    expect(res.headers["x-method"]).toBe("HEAD");
    expect(res.body.length).toBe(0);
  });

  it("answers an HTTP/1.0 client a chunked upstream response whole, delimited by closing", async () => {
    upstream.setHandler((_req, res) => {
      res.write("first;");
      res.end("second");
    });
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(proxyPort, "127.0.0.1", () => {
        socket.write("GET /api/old HTTP/1.0\r\nHost: gateway\r\n\r\n");
      });
      let received = "";
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => (received += chunk));
      socket.once("end", () => resolve(received));
      socket.once("error", reject);
    });
    const [head = "", body] = raw.split("\r\n\r\n");
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    // HTTP/1.0 has no chunked coding: the body is sent as it is and ends with the connection.
    expect(head.toLowerCase()).not.toContain("transfer-encoding");
    expect(head.toLowerCase()).toContain("connection: close");
    expect(body).toBe("first;second");
  });

  it("forwards a Content-Length body with its length", async () => {
    upstream.setHandler((req, res, recorded) => {
      void recorded.body.then((body) => res.end(`${req.headers["content-length"]}:${sha256(body)}`));
    });
    const payload = randomBytes(100_000);
    const res = await send(proxyPort, {
      method: "POST",
      path: "/api/fixed",
      headers: { "content-length": payload.length },
      body: payload,
    });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe(`${payload.length}:${sha256(payload)}`);
    expect(upstream.requests.at(-1)!.headers["transfer-encoding"]).toBeUndefined();
  });
});

describe("request framing", () => {
  // A chunked body whose content is itself an HTTP request: forwarded unframed, the upstream
  // would read it as a second request the gateway never routed.
  const smuggled = "GET /private/admin HTTP/1.1\r\nHost: upstream\r\n\r\n";

  it.each(["DELETE", "OPTIONS", "GET", "POST"])(
    "forwards a chunked %s body framed, as one request",
    async (method) => {
      upstream.setHandler((req, res, recorded) => {
        void recorded.body.then((body) => res.end(`${req.method} ${body.length}`));
      });
      const before = upstream.requests.length;
      const res = await send(proxyPort, {
        method,
        path: "/api/framed",
        headers: { "transfer-encoding": "chunked" },
        body: smuggled,
      });
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`${method} ${smuggled.length}`);
      // The next request reuses the pooled upstream connection: anything smuggled in
      // the body would show up before it.
      expect((await send(proxyPort, { path: "/api/next" })).status).toBe(200);
      const seen = upstream.requests.slice(before);
      expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([`${method} /api/framed`, "GET /api/next"]);
      expect(seen[0]!.headers["transfer-encoding"]).toBe("chunked");
      expect(seen[0]!.headers["content-length"]).toBeUndefined();
      expect((await seen[0]!.body).toString()).toBe(smuggled);
    },
  );

  it("still forwards a DELETE without a body", async () => {
    upstream.setHandler((req, res, recorded) => {
      void recorded.body.then((body) => res.end(`${req.method} ${body.length}`));
    });
    const res = await send(proxyPort, { method: "DELETE", path: "/api/item/1" });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("DELETE 0");
  });
});

describe("upstream connection pool", () => {
  it("reuses one upstream TCP connection for sequential requests from separate clients", async () => {
    upstream.setHandler((_req, res) => res.end("pooled"));
    const before = upstream.requests.length;
    const connectionsBefore = upstream.connections.length;
    for (let i = 0; i < 5; i++) {
      const res = await send(proxyPort, { path: `/api/pool/${i}` }); // a new client connection each time
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe("pooled");
    }
    const seen = upstream.requests.slice(before);
    expect(seen.map((r) => r.url)).toEqual([0, 1, 2, 3, 4].map((i) => `/api/pool/${i}`));
    expect(new Set(seen.map((r) => r.remotePort)).size).toBe(1);
    expect(upstream.connections.length - connectionsBefore).toBeLessThanOrEqual(1);
  });

  it("keeps the client connection alive across requests", async () => {
    upstream.setHandler((_req, res) => res.end("ok"));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    const clientPorts = new Set<number>();
    for (let i = 0; i < 3; i++) {
      const port = await new Promise<number>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port: proxyPort, path: "/api/keep", agent }, (res) => {
          expect(res.headers.connection).toBe("keep-alive");
          res.resume();
          res.on("end", () => resolve(req.socket!.localPort!));
        });
        req.on("error", reject);
        req.end();
      });
      clientPorts.add(port);
    }
    expect(clientPorts.size).toBe(1);
  });
});
