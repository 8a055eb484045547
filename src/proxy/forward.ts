/**
 * The forward stage: hands a request that passed the pipeline to http-proxy-3
 * and maps upstream faults to gateway errors (refused / reset → 502, over the
 * route's time budget → 504). Once response headers have gone out, a fault can
 * only cut the connection: there is never a second response.
 *
 * Both ways, keygate's writes happen in batches, once per event-loop turn: a
 * request that passed the pipeline goes upstream, and an upstream's response
 * head goes to its client, together with every other one that became ready in
 * that turn (see {@link EndOfTurn}).
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createProxyServer, type ProxyServer } from "http-proxy-3";
import { GatewayError, internalError } from "../errors.js";
import type { RequestContext } from "../pipeline/context.js";
import { withoutHeader, withoutHopByHop } from "../pipeline/headers.js";
import type { CompiledRoute } from "../pipeline/route.js";
import type { Upstream } from "./upstream.js";

/** Where one route forwards to, built once at config load (see {@link Forwarder.target}). */
export interface ForwardTarget {
  readonly route: CompiledRoute;
  readonly upstream: Upstream;
  readonly responseTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** An http-proxy-3 instance with this route's options built in. */
  readonly proxy: ProxyServer;
}

class UpstreamTimeout extends Error {
  readonly code = "UPSTREAM_TIMEOUT";
}

const HOP_BY_HOP_RESPONSE = [
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** Per-request state the proxy's event handlers need; kept on the request object. */
interface InFlight {
  ctx: RequestContext;
  target: ForwardTarget;
  timer: NodeJS.Timeout | undefined;
  proxyReq: ClientRequest | undefined;
  timedOut: UpstreamTimeout | undefined;
  /** Set once the fault has been handled, so a late second error is ignored. */
  failed: boolean;
  /** The client sent a chunked body (see the pass in the constructor). */
  chunked: boolean;
}
const IN_FLIGHT: unique symbol = Symbol("keygate.inFlight");
type TrackedRequest = IncomingMessage & { [IN_FLIGHT]?: InFlight };

export interface ForwarderHooks {
  /** Ends a request with a gateway error (headers not yet sent). */
  fail(ctx: RequestContext, res: ServerResponse, error: GatewayError): void;
  /** Same for an upgrade that never got its 101. */
  failUpgrade(ctx: RequestContext, socket: Duplex, error: GatewayError): void;
  /** Counts an upstream fault (whether or not a response could still be sent). */
  upstreamFault(ctx: RequestContext, code: "BAD_GATEWAY" | "UPSTREAM_TIMEOUT", cause: Error): void;
  /** Whether responses should ask the client to close its connection (draining). */
  closing(): boolean;
}

/** A request that passed the pipeline, waiting for the end of the event-loop turn. */
interface QueuedRequest {
  ctx: RequestContext;
  res: ServerResponse;
  target: ForwardTarget;
}

/** An upstream's response head, waiting for the end of the event-loop turn. */
interface QueuedResponse {
  state: InFlight;
  proxyRes: IncomingMessage;
  res: ServerResponse;
}

/**
 * Work that waits for the end of this event-loop turn (the check phase, setImmediate) and is
 * then done item by item, together with every other item added in the turn, rather than from
 * inside the handling of the socket data that made it ready. Under load the same writes done
 * back to back cost far less than interleaved with reading and parsing: batching the requests
 * sent upstream cut a public route's CPU per request by about a fifth, and batching the responses
 * as well raised the Redis path's throughput by a sixth to a third (bench/ab.mjs; README
 * "Performance").
 * The wait lasts until the loop's check phase: later in the same turn for an item that became
 * ready with I/O, one turn later for one that became ready in a check phase.
 */
class EndOfTurn<T> {
  private items: T[] = [];

  constructor(private readonly each: (item: T) => void) {}

  add(item: T): void {
    if (this.items.length === 0) setImmediate(this.run);
    this.items.push(item);
  }

  private readonly run = (): void => {
    const batch = this.items;
    this.items = [];
    for (const item of batch) this.each(item);
  };
}

export class Forwarder {
  private readonly requests = new EndOfTurn<QueuedRequest>((queued) => this.sendQueued(queued));
  private readonly responses = new EndOfTurn<QueuedResponse>((queued) => this.respond(queued));

  constructor(private readonly hooks: ForwarderHooks) {}

  /**
   * The forward target of a route. Each gets its own http-proxy-3 instance with
   * the options fixed at creation: passing options on every `web()` call makes
   * http-proxy-3 merge them per request, which measured about a fifth of a bare
   * proxy's throughput (bench/, A/B of the two call styles).
   */
  target(route: CompiledRoute, upstream: Upstream): ForwardTarget {
    const { timeouts, preserve_host } = route.config;
    const proxy = createProxyServer({
      target: upstream.target,
      agent: upstream.agent,
      secure: upstream.verifyTls,
      ca: upstream.ca?.toString(),
      changeOrigin: !preserve_host,
      xfwd: false,
      prependPath: true,
      // keygate writes the response itself (`respond`), batched with the others of its turn.
      selfHandleResponse: true,
    });
    // http-proxy-3's deleteLength pass gives a DELETE or OPTIONS request without Content-Length a
    // `content-length: 0` and drops its Transfer-Encoding, yet still streams the body: a chunked
    // body would reach the upstream unframed and be read there as further requests (smuggling).
    // Put the framing back just before the request goes out.
    proxy.before("web", "stream", (req) => {
      if (!(req as TrackedRequest)[IN_FLIGHT]?.chunked) return;
      req.headers = withoutHeader(req.headers, "content-length");
      req.headers["transfer-encoding"] = "chunked";
    });
    proxy.on("proxyReq", (proxyReq, req) => this.onProxyRequest(proxyReq, req as TrackedRequest));
    proxy.on("proxyReqWs", (proxyReq, req) => this.onProxyRequest(proxyReq, req as TrackedRequest));
    proxy.on("proxyRes", (proxyRes, req, res) => this.onProxyResponse(proxyRes, req as TrackedRequest, res));
    // A client that went away mid-request: http-proxy-3 already tore the upstream request down.
    proxy.on("econnreset", () => {});
    proxy.on("error", () => {});
    return {
      route,
      upstream,
      responseTimeoutMs: timeouts.response_ms,
      connectTimeoutMs: timeouts.connect_ms,
      proxy,
    };
  }

  /** Marks the request as forwarded: its state for the proxy's events, and the path sent upstream. */
  private track(ctx: RequestContext, target: ForwardTarget, chunked: boolean): InFlight {
    const req = ctx.req as TrackedRequest;
    const state: InFlight = {
      ctx,
      target,
      timer: undefined,
      proxyReq: undefined,
      timedOut: undefined,
      failed: false,
      chunked,
    };
    req[IN_FLIGHT] = state;
    req.url = target.route.upstreamPath(ctx.path) + ctx.query;
    ctx.upstreamStartedAt = performance.now();
    return state;
  }

  /** Forwards a request at the end of this event-loop turn, with the others of the turn. */
  web(ctx: RequestContext, res: ServerResponse, target: ForwardTarget): void {
    this.requests.add({ ctx, res, target });
  }

  private sendQueued({ ctx, res, target }: QueuedRequest): void {
    // The client may have gone while the request waited: its close has already been handled.
    if (res.destroyed) return;
    try {
      this.send(ctx, res, target);
    } catch (error) {
      // One request's failure must not strand the rest of the batch.
      this.closed(ctx.req);
      this.hooks.fail(ctx, res, internalError(error));
    }
  }

  private send(ctx: RequestContext, res: ServerResponse, target: ForwardTarget): void {
    const req = ctx.req as TrackedRequest;
    const state = this.track(ctx, target, req.headers["transfer-encoding"] !== undefined);
    // Node has already answered the client's `Expect: 100-continue`. Passed on, the header would
    // make http-proxy-3 skip its proxyReq event, so no timeout could abort the upstream request.
    req.headers = withoutHeader(req.headers, "expect");
    // Cleared on the upstream's answer or fault, or by `closed` when the client goes first.
    state.timer = setTimeout(() => this.onTimeout(state, res), target.responseTimeoutMs);
    target.proxy.web(req, res, (error) => this.onWebError(state, res, error as Error));
    // response_ms is the upstream's time to answer a complete request: while the client is still
    // sending the body, each chunk restarts the clock, so a slow upload is not a slow upstream.
    if (state.chunked || hasBody(req)) {
      const restart = () => {
        if (ctx.upstreamMs < 0 && !state.timedOut && !state.failed) state.timer?.refresh();
      };
      req.on("data", restart);
      req.once("end", restart);
    }
  }

  /** The response to `req` has closed: whatever forwarding still waits for is over. */
  closed(req: IncomingMessage): void {
    const state = (req as TrackedRequest)[IN_FLIGHT];
    if (state) clearTimeout(state.timer);
  }

  ws(ctx: RequestContext, socket: Duplex, head: Buffer, target: ForwardTarget): void {
    const req = ctx.req as TrackedRequest;
    const state = this.track(ctx, target, false);
    state.timer = setTimeout(() => {
      state.timedOut = new UpstreamTimeout("upstream did not complete the upgrade in time");
      state.proxyReq?.destroy(state.timedOut);
    }, target.responseTimeoutMs);
    socket.once("close", () => clearTimeout(state.timer));
    target.proxy.ws(req, socket as Socket, head, (error) => {
      clearTimeout(state.timer);
      const cause = state.timedOut ?? (error as Error);
      const code = cause instanceof UpstreamTimeout ? "UPSTREAM_TIMEOUT" : "BAD_GATEWAY";
      this.hooks.upstreamFault(ctx, code, cause);
      if (ctx.upstreamMs < 0)
        this.hooks.failUpgrade(ctx, socket, new GatewayError(code, { detail: cause.message }));
    });
  }

  private onProxyRequest(proxyReq: ClientRequest, req: TrackedRequest): void {
    const state = req[IN_FLIGHT];
    if (!state) return;
    state.proxyReq = proxyReq;
    if (state.timedOut) {
      proxyReq.destroy(state.timedOut);
      return;
    }
    if (state.ctx.upgrade) {
      proxyReq.once("upgrade", () => {
        clearTimeout(state.timer);
        state.ctx.upstreamMs = performance.now() - state.ctx.upstreamStartedAt;
      });
    }
    const armConnectTimer = (socket: Socket) => {
      if (!socket.connecting) return;
      const connectTimer = setTimeout(() => {
        state.timedOut = new UpstreamTimeout("upstream connect timed out");
        proxyReq.destroy(state.timedOut);
      }, state.target.connectTimeoutMs);
      socket.once("connect", () => clearTimeout(connectTimer));
      proxyReq.once("close", () => clearTimeout(connectTimer));
    };
    // proxyReq (web) comes with the socket; proxyReqWs comes before the agent has assigned one.
    if (proxyReq.socket) armConnectTimer(proxyReq.socket as Socket);
    else proxyReq.once("socket", armConnectTimer);
  }

  private onProxyResponse(proxyRes: IncomingMessage, req: TrackedRequest, res: ServerResponse): void {
    // Every request handed to http-proxy-3 came through `send`, which tracked it.
    const state = req[IN_FLIGHT]!;
    clearTimeout(state.timer);
    state.ctx.upstreamMs = performance.now() - state.ctx.upstreamStartedAt;
    // An upstream that dies mid-body ends proxyRes with neither 'end' nor an 'error' anyone
    // hears; the pipe to `res` would then wait forever and the client with it. Cut it short.
    proxyRes.once("close", () => {
      if (!proxyRes.complete && !res.destroyed)
        this.onWebError(state, res, new Error("upstream closed the connection mid-response"));
    });
    this.responses.add({ state, proxyRes, res });
  }

  /** Sends an upstream's response on to the client: its status and headers, then its body. */
  private respond({ state, proxyRes, res }: QueuedResponse): void {
    // While the head waited, the client left (http-proxy-3 then aborted the upstream request) or
    // the upstream did (the client has had its 502).
    if (state.failed || res.destroyed) {
      proxyRes.destroy();
      return;
    }
    const headers = withoutHopByHop(proxyRes.headers, HOP_BY_HOP_RESPONSE);
    headers.connection = res.shouldKeepAlive && !this.hooks.closing() ? "keep-alive" : "close";
    headers["x-request-id"] = state.ctx.requestId;
    const extra = state.ctx.responseHeaders;
    if (extra) for (const name in extra) headers[name] = extra[name];
    try {
      // Node frames the body for this client (Content-Length as given, else chunked or close).
      res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage || undefined, headers);
    } catch (error) {
      // A header Node refuses to write: this response gets a 500, the rest of the batch goes on.
      state.failed = true;
      proxyRes.destroy();
      this.hooks.fail(state.ctx, res, internalError(error));
      return;
    }
    proxyRes.pipe(res);
  }

  private onTimeout(state: InFlight, res: ServerResponse): void {
    state.timedOut = new UpstreamTimeout("upstream did not answer in time");
    if (state.proxyReq) state.proxyReq.destroy(state.timedOut);
    // Still queued for a pooled connection: no request to abort, answer now.
    else this.onWebError(state, res, state.timedOut);
  }

  private onWebError(state: InFlight, res: ServerResponse, error: Error): void {
    clearTimeout(state.timer);
    if (state.failed) return;
    state.failed = true;
    const cause = state.timedOut ?? error;
    const code = cause instanceof UpstreamTimeout ? "UPSTREAM_TIMEOUT" : "BAD_GATEWAY";
    this.hooks.upstreamFault(state.ctx, code, cause);
    if (res.headersSent || res.writableEnded) {
      // Part of the upstream's answer is already out; all that is honest is to cut it short.
      state.ctx.error = new GatewayError(code, { detail: `${describe(cause)} (response cut short)`, cause });
      res.destroy(cause);
      return;
    }
    this.hooks.fail(state.ctx, res, new GatewayError(code, { detail: describe(cause), cause }));
  }
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return length !== undefined && length !== "0";
}

function describe(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code ? `${code}: ${error.message}` : error.message;
}
