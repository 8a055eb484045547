/**
 * A reload keeps the keep-alive pool of an upstream whose settings did not
 * change (no reconnect storm on every SIGHUP), and gives a changed upstream
 * block a pool of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { send, startUpstream, type TestUpstream } from "../helpers/upstream.js";

let upstream: TestUpstream;
let gateway: TestGateway;

// Listener and store settings change only at a restart; the helper supplies them for the start.
const config = (maxSockets: number) => `
routes:
  - name: api
    auth: { public: true }
    match: { path_prefix: / }
    upstream: { url: "${upstream.url}", max_sockets: ${maxSockets} }
`;

beforeAll(async () => {
  upstream = await startUpstream();
  gateway = await startGateway(config(8));
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
});

describe("reload and upstream pools", () => {
  it("keeps the open upstream connection across a reload that leaves the upstream unchanged", async () => {
    const port = gateway.addresses.proxy.port;
    expect((await send(port, { path: "/a" })).status).toBe(200);
    const opened = upstream.connections.length;

    gateway.gateway.reload(parseConfig(config(8), "reload.yaml", {}));
    expect((await send(port, { path: "/b" })).status).toBe(200);
    expect(upstream.connections.length).toBe(opened);

    gateway.gateway.reload(parseConfig(config(16), "reload.yaml", {}));
    expect((await send(port, { path: "/c" })).status).toBe(200);
    expect(upstream.connections.length).toBe(opened + 1);
  });
});
