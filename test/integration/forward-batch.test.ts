/**
 * The Forwarder hands requests to http-proxy-3 in batches, once per event-loop
 * turn, and writes the upstreams' responses back the same way. These tests
 * hold requests until several have arrived and pass them to it in one turn,
 * through a real listener, http-proxy-3 and upstream: every request of the
 * batch is answered, one that fails to go out gets its own 500, and one whose
 * client left while it waited never reaches the upstream. On the way back, a
 * response waits for the end of its turn, one whose client left meanwhile is
 * dropped, and one Node refuses to write gets a 500 without holding up the rest.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { ERROR_CATALOGUE, type GatewayError } from "../../src/errors.js";
import { createContext, type RequestContext } from "../../src/pipeline/context.js";
import { compileRoute } from "../../src/pipeline/route.js";
import { Forwarder, type ForwardTarget } from "../../src/proxy/forward.js";
import { createUpstream, destroyUpstreams, type Upstream } from "../../src/proxy/upstream.js";
import { send, startUpstream, type TestUpstream } from "../helpers/upstream.js";

interface Held {
  ctx: RequestContext;
  res: ServerResponse;
}

let upstream: TestUpstream | undefined;
let listener: Server | undefined;
let pool: Map<string, Upstream> | undefined;

afterEach(async () => {
  if (pool) destroyUpstreams(pool);
  if (listener) {
    listener.closeAllConnections();
    await new Promise((resolve) => listener?.close(resolve));
  }
  await upstream?.close();
  upstream = undefined;
  listener = undefined;
  pool = undefined;
});

/** A route to the test upstream, its forward target, and a Forwarder whose failures answer with their status. */
function forwarderTo(url: string): { forwarder: Forwarder; target: ForwardTarget; failures: GatewayError[] } {
  const config = parseConfig(
    `routes:\n  - name: api\n    match: { path_prefix: / }\n    upstream: { url: "${url}" }\n    auth: { public: true }\n`,
    "routes.yaml",
    {},
  );
  const route = compileRoute(config.routes[0]!);
  const failures: GatewayError[] = [];
  const forwarder = new Forwarder({
    fail: (_ctx, res, error) => {
      failures.push(error);
      res.writeHead(ERROR_CATALOGUE[error.code].status, { "content-type": "text/plain" }).end(error.code);
    },
    failUpgrade: () => {},
    upstreamFault: () => {},
    closing: () => false,
  });
  pool = new Map();
  return {
    forwarder,
    target: forwarder.target(route, createUpstream(route.config.upstream, pool)),
    failures,
  };
}

/** `target` with its proxy's `web` recording each request target handed over (synchronously, as it happens). */
function recording(target: ForwardTarget, handedOver: string[]): ForwardTarget {
  return {
    ...target,
    proxy: {
      web: (req: IncomingMessage, ...rest: unknown[]) => {
        handedOver.push(req.url ?? "");
        return (target.proxy.web as (...args: unknown[]) => void)(req, ...rest);
      },
    } as unknown as ForwardTarget["proxy"],
  };
}

/** The context the pipeline would have built: here only the path and query matter. */
function context(req: IncomingMessage): RequestContext {
  const [path, query] = (req.url ?? "/").split("?") as [string, string | undefined];
  return { ...createContext(req, false), path, query: query === undefined ? "" : `?${query}` };
}

/** A listener that holds requests until `count` have arrived, then calls `release` with them in one turn. */
async function holdingListener(count: number, release: (held: Held[]) => void): Promise<number> {
  const held: Held[] = [];
  listener = createServer((req, res) => {
    held.push({ ctx: context(req), res });
    if (held.length === count) release(held.splice(0));
  });
  await new Promise<void>((resolve) => listener?.listen(0, "127.0.0.1", resolve));
  return (listener.address() as AddressInfo).port;
}

describe("forwarding in batches", () => {
  it("answers every request that became ready in the same turn", async () => {
    upstream = await startUpstream();
    const { forwarder, target } = forwarderTo(upstream.url);
    const handedOver: string[] = [];
    let handedOverAtOnce = -1;
    const port = await holdingListener(5, (held) => {
      for (const { ctx, res } of held) forwarder.web(ctx, res, recording(target, handedOver));
      handedOverAtOnce = handedOver.length;
    });

    const responses = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => send(port, { path: `/item/${i}?n=${i}` })),
    );

    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(responses.map((r) => JSON.parse(r.body.toString()).url)).toEqual(
      [0, 1, 2, 3, 4].map((i) => `/item/${i}?n=${i}`),
    );
    // Nothing went out while the requests were being queued; all five went out after.
    expect(handedOverAtOnce).toBe(0);
    expect(handedOver.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `/item/${i}?n=${i}`));
    expect(upstream.requests).toHaveLength(5);
  });

  it("fails only the request that could not be sent; the rest of its batch goes out", async () => {
    upstream = await startUpstream();
    const { forwarder, target, failures } = forwarderTo(upstream.url);
    const broken: ForwardTarget = {
      ...target,
      proxy: {
        web: () => {
          throw new Error("cannot build the upstream request");
        },
      } as unknown as ForwardTarget["proxy"],
    };
    const port = await holdingListener(3, (held) => {
      for (const { ctx, res } of held) forwarder.web(ctx, res, ctx.path === "/item/1" ? broken : target);
    });

    const responses = await Promise.all([0, 1, 2].map((i) => send(port, { path: `/item/${i}` })));

    const byPath = new Map(responses.map((r, i) => [`/item/${i}`, r]));
    expect(byPath.get("/item/1")?.status).toBe(500);
    expect(failures.map((f) => [f.code, f.detail])).toEqual([
      ["INTERNAL_ERROR", "cannot build the upstream request"],
    ]);
    expect(byPath.get("/item/0")?.status).toBe(200);
    expect(byPath.get("/item/2")?.status).toBe(200);
    expect(upstream.requests.map((r) => r.url).sort()).toEqual(["/item/0", "/item/2"]);
  });

  it("drops a request whose client went away while it waited", async () => {
    upstream = await startUpstream();
    const { forwarder, target } = forwarderTo(upstream.url);
    const handedOver: string[] = [];
    const port = await holdingListener(2, (held) => {
      for (const { ctx, res } of held) forwarder.web(ctx, res, recording(target, handedOver));
      // Gone before the end of the turn, when the batch is sent.
      held.find((h) => h.ctx.path === "/gone")?.res.destroy();
    });

    const [kept, gone] = await Promise.allSettled([
      send(port, { path: "/kept" }),
      send(port, { path: "/gone" }),
    ]);

    expect(kept.status === "fulfilled" && kept.value.status).toBe(200);
    expect(gone.status).toBe("rejected");
    expect(handedOver).toEqual(["/kept"]);
    expect(upstream.requests.map((r) => r.url)).toEqual(["/kept"]);
  });
});

describe("writing responses in batches", () => {
  /** A listener that forwards each request as it arrives, after `prepare` has seen its context. */
  async function forwardingListener(
    forwarder: Forwarder,
    target: ForwardTarget,
    prepare: (ctx: RequestContext) => void = () => {},
  ): Promise<number> {
    listener = createServer((req, res) => {
      const ctx = context(req);
      prepare(ctx);
      forwarder.web(ctx, res, target);
    });
    await new Promise<void>((resolve) => listener?.listen(0, "127.0.0.1", resolve));
    return (listener.address() as AddressInfo).port;
  }

  it("writes a response head only at the end of the turn it arrived in", async () => {
    upstream = await startUpstream();
    const { forwarder, target } = forwarderTo(upstream.url);
    const writtenBeforeTurnEnded: boolean[] = [];
    // Runs right after the Forwarder's own handler, as the response head arrives. A response
    // written there and then would have its head out by the time the promise jobs run.
    target.proxy.on("proxyRes", (_proxyRes, _req, res) => {
      queueMicrotask(() => writtenBeforeTurnEnded.push((res as ServerResponse).headersSent));
    });
    const port = await forwardingListener(forwarder, target);

    const responses = await Promise.all([0, 1, 2].map((i) => send(port, { path: `/item/${i}` })));

    expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(responses.map((r) => JSON.parse(r.body.toString()).url)).toEqual([
      "/item/0",
      "/item/1",
      "/item/2",
    ]);
    expect(writtenBeforeTurnEnded).toEqual([false, false, false]);
  });

  it("drops a response whose client went away while it waited, and keeps answering", async () => {
    upstream = await startUpstream();
    const { forwarder, target } = forwarderTo(upstream.url);
    target.proxy.on("proxyRes", (_proxyRes, req, res) => {
      if ((req as IncomingMessage).url === "/gone") (res as ServerResponse).destroy();
    });
    const port = await forwardingListener(forwarder, target);

    const gone = await send(port, { path: "/gone" }).then(
      () => "answered",
      (error: NodeJS.ErrnoException) => error.code,
    );
    const kept = await send(port, { path: "/kept" });

    expect(gone).toBe("ECONNRESET");
    expect(kept.status).toBe(200);
    expect(upstream.requests.map((r) => r.url)).toEqual(["/gone", "/kept"]);
  });

  it("answers 500 for a response Node refuses to write; the others are answered", async () => {
    upstream = await startUpstream();
    const { forwarder, target, failures } = forwarderTo(upstream.url);
    const port = await forwardingListener(forwarder, target, (ctx) => {
      // A header value with a line break: Node will not write it.
      if (ctx.path === "/bad") ctx.responseHeaders = { "x-broken": "a\r\nb" };
    });

    const responses = await Promise.all(["/ok", "/bad", "/ok"].map((path) => send(port, { path })));

    expect(responses.map((r) => r.status)).toEqual([200, 500, 200]);
    expect(failures.map((f) => f.code)).toEqual(["INTERNAL_ERROR"]);
    expect(responses[1]?.headers["x-broken"]).toBeUndefined();
  });
});
