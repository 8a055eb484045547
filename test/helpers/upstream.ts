/**
 * A real upstream HTTP server on a free port that records what reaches it:
 * method, target, headers and body of every request, and the client port of
 * every TCP connection (so a test can count the connections the gateway
 * opened). Tests own it: `close()` it in afterEach/afterAll.
 *
 * Also a small `node:http` client (`send`) for requests `fetch` cannot make:
 * raw request targets (fetch normalizes `/a/%2e%2e/b`), hop-by-hop headers,
 * a chosen agent.
 */

import { spawn } from "node:child_process";
import {
  type Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request,
  type ServerResponse,
} from "node:http";
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from "node:net";

export interface RecordedRequest {
  method: string;
  /** The request target exactly as it arrived (path and query). */
  url: string;
  headers: IncomingHttpHeaders;
  /** Header names and values as sent, in order. */
  rawHeaders: string[];
  /** Client port of the TCP connection this request came on. */
  remotePort: number;
  /** The whole body; resolves when the request has ended (or was aborted). */
  body: Promise<Buffer>;
}

/** Answers one request. The default echoes `{ method, url }` as JSON once the body is read. */
export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest) => void;

export interface TestUpstream {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Client port of each accepted TCP connection, in order. */
  readonly connections: number[];
  /** Replaces the handler for the requests that follow. */
  setHandler(handler: UpstreamHandler): void;
  /** Resolves with the next request that arrives. */
  nextRequest(): Promise<RecordedRequest>;
  close(): Promise<void>;
}

export const echoHandler: UpstreamHandler = (req, res, recorded) => {
  void recorded.body.then((body) => {
    const payload = JSON.stringify({ method: req.method, url: req.url, bodyLength: body.length });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
    res.end(payload);
  });
};

export async function startUpstream(handler: UpstreamHandler = echoHandler): Promise<TestUpstream> {
  let current = handler;
  const requests: RecordedRequest[] = [];
  const connections: number[] = [];
  const sockets = new Set<Socket>();
  const waiting: ((r: RecordedRequest) => void)[] = [];

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    const body = new Promise<Buffer>((resolve) => {
      req.on("data", (chunk: Buffer | string) => chunks.push(Buffer.from(chunk)));
      req.once("end", () => resolve(Buffer.concat(chunks)));
      req.once("close", () => resolve(Buffer.concat(chunks)));
    });
    const recorded: RecordedRequest = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      remotePort: req.socket.remotePort ?? -1,
      body,
    };
    requests.push(recorded);
    waiting.shift()?.(recorded);
    current(req, res, recorded);
  });
  server.on("connection", (socket: Socket) => {
    connections.push(socket.remotePort ?? -1);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    connections,
    setHandler: (next) => {
      current = next;
    },
    nextRequest: () => new Promise((resolve) => waiting.push(resolve)),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on: bound once by the OS, then released. */
export async function unusedPort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

export interface Blackhole {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A listening port whose accept queue is full: a TCP connect to it neither
 * succeeds nor fails, it hangs (the kernel drops the SYN). A child process
 * listens with a backlog of 1 and never accepts; this fills its queue.
 */
export async function startBlackhole(): Promise<Blackhole> {
  const child = spawn(
    process.execPath,
    [
      "-e",
      `const s = require("node:net").createServer();
       s.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
         // Stop accepting for good: block this process's event loop without burning CPU.
         setImmediate(() => {
           process.stdout.write(s.address().port + "\\n", () =>
             Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0));
         });
       });`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once("data", (data: Buffer) => resolve(Number(data.toString().trim())));
    child.once("exit", (code) => reject(new Error(`blackhole process exited early (${code})`)));
  });
  const fillers: Socket[] = [];
  for (let i = 0; i < 8; i++) {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    fillers.push(socket);
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 200);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!connected) break; // the queue is full: connects hang from here on
  }
  return {
    port,
    close: async () => {
      for (const socket of fillers) socket.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

export interface SendOptions {
  method?: string;
  /** Sent verbatim as the request target. */
  path: string;
  headers?: OutgoingHttpHeaders;
  /** Written with Content-Length; pass chunks through `onRequest` to stream instead. */
  body?: Buffer | string;
  /** Default: a fresh connection per request (`agent: false`). */
  agent?: Agent | false;
}

export interface SendResult {
  status: number;
  /** The reason phrase of the status line. */
  statusMessage: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** False when the response was cut short (the connection died before its end). */
  complete: boolean;
}

/** One request to `port` on 127.0.0.1, resolving when the response ended or was cut short. */
export function send(port: number, options: SendOptions): Promise<SendResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path,
        headers: options.headers,
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let settled = false;
        const settle = () => {
          if (settled) return;
          settled = true;
          resolve({
            status: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? "",
            headers: res.headers,
            body: Buffer.concat(chunks),
            complete: res.complete,
          });
        };
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.once("end", settle);
        res.once("error", settle);
        res.once("close", settle);
      },
    );
    req.once("error", reject);
    req.end(options.body);
  });
}

/** Parses a JSON response body. */
export function json(result: SendResult): unknown {
  return JSON.parse(result.body.toString("utf8"));
}
