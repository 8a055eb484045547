/**
 * WebSocket upgrades through the gateway: a real `ws` echo server as the
 * upstream, a real `ws` client on the proxy port.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { type Blackhole, startBlackhole, unusedPort } from "../helpers/upstream.js";

let gateway: TestGateway;
let server: Server;
let wss: WebSocketServer;
let blackhole: Blackhole;
/** The handshake requests the upstream accepted. */
const handshakes: IncomingMessage[] = [];
/** Plain HTTP requests (without an upgrade) that reached the upstream. */
const plainRequests: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    plainRequests.push(req.url ?? "");
    res.end("plain");
  });
  wss = new WebSocketServer({ server });
  wss.on("connection", (socket, req) => {
    handshakes.push(req);
    socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  blackhole = await startBlackhole();
  gateway = await startGateway(`
routes:
  - name: ws-down
    match: { path_prefix: /down }
    upstream: { url: "http://127.0.0.1:${await unusedPort()}" }
    auth: { public: true }
  - name: ws-unreachable
    match: { path_prefix: /unreachable }
    upstream: { url: "http://127.0.0.1:${blackhole.port}" }
    auth: { public: true }
    timeouts: { connect_ms: 100, response_ms: 60000 }
  - name: nows
    match: { path_prefix: /nows }
    upstream: { url: "${upstreamUrl}" }
    auth: { public: true }
    websocket: false
  - name: ws
    match: { path_prefix: /ws }
    strip_prefix: true
    upstream: { url: "${upstreamUrl}" }
    auth: { public: true }
`);
});

afterAll(async () => {
  await gateway.stop();
  await blackhole.close();
  for (const client of wss.clients) client.terminate();
  wss.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function open(path: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${gateway.addresses.proxy.port}${path}`, { headers });
  return new Promise((resolve, reject) => {
    socket.once("open", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Status of the HTTP response that refused an upgrade (fails if the upgrade succeeds). */
function refusal(path: string): Promise<number> {
  const socket = new WebSocket(`ws://127.0.0.1:${gateway.addresses.proxy.port}${path}`, {
    handshakeTimeout: 5_000,
  });
  return new Promise<number>((resolve, reject) => {
    socket.once("unexpected-response", (_req, res) => {
      res.resume();
      socket.terminate();
      resolve(res.statusCode ?? 0);
    });
    socket.once("open", () => reject(new Error("upgrade was accepted")));
    socket.once("error", reject);
  });
}

function nextMessage(socket: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) =>
    socket.once("message", (data, isBinary) => resolve({ data: data as Buffer, isBinary })),
  );
}

describe("websocket", () => {
  it("echoes text and binary messages through the gateway", async () => {
    const before = handshakes.length;
    const socket = await open("/ws/echo?room=1", { "x-request-id": "ws-req-1" });
    try {
      socket.send("hello through keygate");
      const text = await nextMessage(socket);
      expect(text.isBinary).toBe(false);
      expect(text.data.toString()).toBe("hello through keygate");

      const payload = Buffer.alloc(256 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
      socket.send(payload);
      const binary = await nextMessage(socket);
      expect(binary.isBinary).toBe(true);
      expect(Buffer.compare(binary.data, payload)).toBe(0);
    } finally {
      socket.close();
    }
    expect(handshakes.length).toBe(before + 1);
    const handshake = handshakes.at(-1)!;
    expect(handshake.url).toBe("/echo?room=1");
    expect(handshake.headers["x-request-id"]).toBe("ws-req-1");
    expect(handshake.headers["x-forwarded-for"]).toBe("127.0.0.1");
  });

  it("carries several connections at once", async () => {
    const sockets = await Promise.all([open("/ws/a"), open("/ws/b"), open("/ws/c")]);
    try {
      const replies = sockets.map((s) => nextMessage(s));
      for (const [i, s] of sockets.entries()) s.send(`message ${i}`);
      expect((await Promise.all(replies)).map((r) => r.data.toString())).toEqual([
        "message 0",
        "message 1",
        "message 2",
      ]);
    } finally {
      for (const s of sockets) s.close();
    }
  });

  it("refuses the upgrade on a route with websocket: false, without reaching the upstream", async () => {
    const before = handshakes.length;
    expect(await refusal("/nows/echo")).toBe(404);
    expect(handshakes.length).toBe(before);

    // The same route still serves plain HTTP.
    const res = await fetch(`http://127.0.0.1:${gateway.addresses.proxy.port}/nows/page`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("plain");
    expect(plainRequests).toContain("/nows/page");
  });

  it("answers 502 when the upstream refuses the connection", async () => {
    expect(await refusal("/down/echo")).toBe(502);
  });

  it("answers 504 after timeouts.connect_ms when the upstream never accepts the connection", async () => {
    expect(await refusal("/unreachable/echo")).toBe(504);
  });
});
