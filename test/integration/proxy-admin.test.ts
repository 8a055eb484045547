/**
 * The admin listener next to the proxy: liveness, readiness (503 once a
 * shutdown has begun), and Prometheus metrics labelled by route.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { get } from "../helpers/process.js";
import { send, startUpstream, type TestUpstream } from "../helpers/upstream.js";

let gateway: TestGateway | undefined;
let upstream: TestUpstream | undefined;

afterEach(async () => {
  await gateway?.stop();
  await upstream?.close();
  gateway = undefined;
  upstream = undefined;
});

async function start(settings = ""): Promise<TestGateway> {
  upstream ??= await startUpstream();
  gateway = await startGateway(`${settings}
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
    auth: { public: true }
  - name: other
    match: { path_prefix: /other }
    upstream: { url: "${upstream.url}" }
    auth: { public: true }
`);
  return gateway;
}

/** An upstream that answers "finished" to every request once `release()` is called. */
async function startHeldUpstream(): Promise<{ slow: TestUpstream; release: () => void }> {
  const slow = await startUpstream();
  upstream = slow;
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  slow.setHandler((_req, res) => void released.then(() => res.end("finished")));
  return { slow, release };
}

describe("admin listener", () => {
  it("answers /healthz and /readyz with 200", async () => {
    const { addresses } = await start();
    expect(await get(addresses.admin.port, "/healthz")).toEqual({ status: 200, body: '{"status":"ok"}' });
    expect(await get(addresses.admin.port, "/readyz")).toEqual({ status: 200, body: '{"status":"ready"}' });
    expect((await get(addresses.admin.port, "/nope")).status).toBe(404);
  });

  it("is a separate listener: the proxy port does not serve admin paths", async () => {
    const { addresses } = await start();
    expect(addresses.admin.port).not.toBe(addresses.proxy.port);
    const res = await send(addresses.proxy.port, { path: "/metrics" });
    expect(res.status).toBe(404);
    expect(res.body.toString()).toContain("NOT_FOUND");
  });

  it("exposes keygate_requests_total by route, method and status", async () => {
    const { addresses } = await start();
    for (let i = 0; i < 3; i++)
      expect((await send(addresses.proxy.port, { path: "/api/x" })).status).toBe(200);
    expect((await send(addresses.proxy.port, { path: "/other/y", method: "POST" })).status).toBe(200);
    expect((await send(addresses.proxy.port, { path: "/missing" })).status).toBe(404);

    await expect
      .poll(async () => (await get(addresses.admin.port, "/metrics")).body)
      .toContain('keygate_requests_total{route="none",method="GET",status="404"} 1');
    const metrics = await get(addresses.admin.port, "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain("# TYPE keygate_requests_total counter");
    expect(metrics.body).toContain('keygate_requests_total{route="api",method="GET",status="200"} 3');
    expect(metrics.body).toContain('keygate_requests_total{route="other",method="POST",status="200"} 1');
    expect(metrics.body).toMatch(/keygate_request_duration_seconds_count\{route="api"\} 3/);
    expect(metrics.body).toMatch(/keygate_upstream_duration_seconds_count\{route="api"\} 3/);
  });

  it("counts requests in flight in keygate_requests_in_flight", async () => {
    const { slow, release } = await startHeldUpstream();
    const { addresses } = await start();
    const inFlightGauge = async () =>
      /^keygate_requests_in_flight (\d+)$/m.exec((await get(addresses.admin.port, "/metrics")).body)?.[1];
    expect(await inFlightGauge()).toBe("0");

    const arrived = [slow.nextRequest(), slow.nextRequest()];
    const held = [
      send(addresses.proxy.port, { path: "/api/a" }),
      send(addresses.proxy.port, { path: "/other/b" }),
    ];
    await Promise.all(arrived);
    expect(await inFlightGauge()).toBe("2");
    release();
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200]);
    await expect.poll(inFlightGauge).toBe("0");
  });

  it("with logging.access_log off, writes no access line yet still counts the request", async () => {
    const { addresses, logLines } = await start("logging: { access_log: false }");
    expect((await send(addresses.proxy.port, { path: "/api/x" })).status).toBe(200);
    await expect
      .poll(async () => (await get(addresses.admin.port, "/metrics")).body)
      .toContain('keygate_requests_total{route="api",method="GET",status="200"} 1');
    expect(logLines().filter((line) => line.msg === "request")).toEqual([]);
    expect(logLines().some((line) => line.msg === "keygate listening")).toBe(true);
  });

  it("writes one access line per request by default", async () => {
    const { addresses, logLines } = await start();
    expect((await send(addresses.proxy.port, { path: "/api/x" })).status).toBe(200);
    await expect
      .poll(() => logLines().filter((line) => line.msg === "request"))
      .toEqual([expect.objectContaining({ route: "api", path: "/api/x", status: 200 })]);
  });

  it("turns /readyz to 503 once shutdown starts, while an in-flight request finishes", async () => {
    const { slow, release } = await startHeldUpstream();
    const gw = await start();
    const admin = gw.addresses.admin.port;
    expect((await get(admin, "/readyz")).status).toBe(200);

    const arrived = slow.nextRequest();
    const inFlight = send(gw.addresses.proxy.port, { path: "/api/held" });
    await arrived;
    const stopped = gw.stop();

    expect(await get(admin, "/readyz")).toEqual({ status: 503, body: '{"status":"draining"}' });
    expect((await get(admin, "/healthz")).status).toBe(200);

    release();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("finished");
    await stopped;
    await expect(get(admin, "/readyz")).rejects.toThrow(/ECONNREFUSED/);
  });
});
