/**
 * The gateway process: two listeners (proxy and admin), the request pipeline
 * between them, and the lifecycle (start, reload, drain, stop).
 */
import { readFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { Registry } from "prom-client";
import { createKeysApi } from "../admin/keys-api.js";
import { createAdminHandler, type ReadinessCheck } from "../admin/server.js";
import type { Config } from "../config/schema.js";
import { GatewayError, internalError } from "../errors.js";
import { LastUsedTracker } from "../keys/last-used.js";
import { KeyLookup } from "../keys/lookup.js";
import { KeyService } from "../keys/service.js";
import type { Logger } from "../observability/logger.js";
import type { GatewayMetrics } from "../observability/metrics.js";
import { createContext, type RequestContext } from "../pipeline/context.js";
import { FailedAuthGuard } from "../pipeline/failed-auth.js";
import { createObserver, type Observer } from "../pipeline/observe.js";
import { sendError, sendErrorOnSocket } from "../pipeline/respond.js";
import { runStages } from "../pipeline/run.js";
import { Forwarder } from "../proxy/forward.js";
import { destroyUpstreams } from "../proxy/upstream.js";
import type { LimitStore } from "../ratelimit/limit-store.js";
import type { KeyStore } from "../store/key-store.js";
import { compileRuntime, type Runtime } from "./runtime.js";

export interface GatewayDeps {
  logger: Logger;
  registry: Registry;
  metrics: GatewayMetrics;
  /** The key store; the gateway owns it from here on and closes it on shutdown. */
  store: KeyStore;
  /** The rate-limit counters (Redis or in process, matching the key store). */
  limiter: LimitStore;
  /** Admin API tokens (already read from config and token file). */
  adminTokens: readonly string[];
  /** Wall clock in epoch ms (injected for tests). */
  now?: () => number;
}

export interface ListeningAddresses {
  proxy: AddressInfo;
  admin: AddressInfo;
}

export class Gateway {
  private runtime: Runtime;
  private keyService: KeyService;
  private readonly lookup: KeyLookup;
  private readonly tracker: LastUsedTracker;
  private readonly guard: FailedAuthGuard;
  private readonly now: () => number;
  private readonly forwarder: Forwarder;
  private readonly observe: Observer;
  private readonly proxyServer: Server;
  private readonly adminServer: Server;
  private readonly upgradedSockets = new Set<Duplex>();
  private inFlight = 0;
  private readonly readInFlight = () => this.inFlight;
  private draining = false;
  private drained: (() => void) | undefined;

  constructor(
    config: Config,
    private readonly deps: GatewayDeps,
  ) {
    this.now = deps.now ?? Date.now;
    this.lookup = new KeyLookup(deps.store, {
      size: config.keys.cache.size,
      ttlMs: config.keys.cache.ttl_ms,
      negativeTtlMs: config.keys.cache.negative_ttl_ms,
    });
    this.tracker = new LastUsedTracker(deps.store, config.keys.last_used_flush_ms, this.now, (error) =>
      deps.logger.warn({ err: (error as Error).message }, "last-used flush failed; will retry"),
    );
    const { failed_attempts } = config.auth;
    this.guard = new FailedAuthGuard(failed_attempts.limit, failed_attempts.window_ms, this.now);
    this.forwarder = new Forwarder({
      fail: (ctx, res, error) => this.fail(ctx, res, error),
      failUpgrade: (ctx, socket, error) => this.failUpgrade(ctx, socket, error),
      upstreamFault: (ctx, code, cause) => {
        deps.metrics.upstreamErrors.inc({ route: ctx.route?.name ?? "none", code });
        deps.logger.debug({ req_id: ctx.requestId, err: cause.message }, "upstream fault");
      },
      closing: () => this.draining,
    });
    this.runtime = this.compile(config);
    this.keyService = this.createKeyService();
    deps.metrics.inFlightReaders.add(this.readInFlight);
    this.observe = createObserver(deps.logger, deps.metrics, {
      accessLog: config.logging.access_log,
      redactQuery: (q) => this.runtime.redactQuery(q),
    });
    this.proxyServer = createListener(config, config.listeners.proxy.tls, (req, res) =>
      this.handle(req, res),
    );
    this.proxyServer.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.handleUpgrade(req, socket, head),
    );
    const readiness: ReadinessCheck[] = [{ name: "key_store", check: () => deps.store.ping() }];
    const admin = createAdminHandler({
      registry: deps.registry,
      readiness: () => readiness,
      draining: () => this.draining,
      api: createKeysApi({
        service: () => this.keyService,
        tokens: deps.adminTokens,
        audit: (action, fields) => deps.logger.info(fields, action),
      }),
    });
    this.adminServer = createListener(config, config.listeners.admin.tls, (req, res) => void admin(req, res));
  }

  get config(): Config {
    return this.runtime.config;
  }

  private compile(config: Config, previous?: Runtime): Runtime {
    this.guard.configure(config.auth.failed_attempts.limit, config.auth.failed_attempts.window_ms);
    return compileRuntime(
      config,
      {
        lookup: this.lookup,
        tracker: this.tracker,
        limiter: this.deps.limiter,
        guard: this.guard,
        forwarder: this.forwarder,
        metrics: this.deps.metrics,
        logger: this.deps.logger,
        now: this.now,
      },
      previous,
    );
  }

  private createKeyService(): KeyService {
    const { config, formats } = this.runtime;
    return new KeyService(this.deps.store, {
      formats,
      generateFormat: config.keys.generate ?? (formats[0] as { name: string }).name,
      planExists: (plan) => Object.hasOwn(config.plans, plan),
      now: this.now,
      onPublishError: (error, event) =>
        this.deps.logger.warn(
          { err: (error as Error).message, key_id: event.id, event: event.type },
          "invalidation broadcast failed; caches expire the key within their TTL",
        ),
    });
  }

  async listen(): Promise<ListeningAddresses> {
    await this.lookup.start();
    this.tracker.start();
    const { proxy, admin } = this.runtime.config.listeners;
    await listen(this.adminServer, admin.host, admin.port);
    await listen(this.proxyServer, proxy.host, proxy.port);
    const addresses = {
      proxy: this.proxyServer.address() as AddressInfo,
      admin: this.adminServer.address() as AddressInfo,
    };
    this.deps.logger.info(addresses, "keygate listening");
    return addresses;
  }

  /**
   * Swaps in a new configuration. Requests already in the pipeline finish on
   * the runtime they started with; listener settings apply from the next start.
   */
  reload(config: Config): void {
    const previous = this.runtime;
    const next = this.compile(config, previous);
    this.runtime = next;
    this.keyService = this.createKeyService();
    // Pools the new configuration no longer uses close once requests still on them had time to finish.
    setTimeout(
      () => destroyUpstreams(previous.upstreams, next.upstreams),
      config.server.shutdown_grace_ms,
    ).unref();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const runtime = this.runtime;
    const ctx = createContext(req, false);
    this.inFlight++;
    res.once("close", () => this.finish(ctx, res));
    if (this.draining) res.shouldKeepAlive = false;

    let outcome: ReturnType<typeof runStages>;
    try {
      outcome = runStages(runtime.stages, ctx);
    } catch (error) {
      outcome = internalError(error);
    }
    if (outcome === undefined) this.forward(runtime, ctx, res);
    else if (outcome instanceof GatewayError) this.fail(ctx, res, outcome);
    else
      outcome.then(
        (error) => (error ? this.fail(ctx, res, error) : this.forward(runtime, ctx, res)),
        (error) => this.fail(ctx, res, internalError(error)),
      );
  }

  private forward(runtime: Runtime, ctx: RequestContext, res: ServerResponse): void {
    if (res.destroyed) return;
    this.forwarder.web(ctx, res, runtime.targets.get(ctx.route!)!);
  }

  private fail(ctx: RequestContext, res: ServerResponse, error: GatewayError): void {
    ctx.error = error;
    if (error.code === "INTERNAL_ERROR")
      this.deps.logger.error({ req_id: ctx.requestId, err: error.cause }, "internal error");
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (this.draining) res.setHeader("connection", "close");
    sendError(res, this.runtime.render, error, ctx.requestId, ctx.responseHeaders);
  }

  private handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const runtime = this.runtime;
    const ctx = createContext(req, true);
    socket.on("error", () => socket.destroy());
    if (this.draining) {
      this.failUpgrade(ctx, socket, new GatewayError("SHUTTING_DOWN"));
      return;
    }
    this.upgradedSockets.add(socket);
    socket.once("close", () => this.upgradedSockets.delete(socket));

    const proceed = (error: GatewayError | undefined) => {
      if (error) {
        this.failUpgrade(ctx, socket, error);
        return;
      }
      this.deps.logger.info(
        { req_id: ctx.requestId, route: ctx.route?.name, path: ctx.path, client: ctx.clientAddress },
        "websocket",
      );
      this.forwarder.ws(ctx, socket, head, runtime.targets.get(ctx.route!)!);
    };
    let outcome: ReturnType<typeof runStages>;
    try {
      outcome = runStages(runtime.stages, ctx);
    } catch (error) {
      outcome = internalError(error);
    }
    if (outcome instanceof Promise) outcome.then(proceed, (error) => proceed(internalError(error)));
    else proceed(outcome);
  }

  private failUpgrade(ctx: RequestContext, socket: Duplex, error: GatewayError): void {
    ctx.error = error;
    this.deps.logger.info(
      {
        req_id: ctx.requestId,
        path: ctx.path,
        client: ctx.clientAddress,
        error: error.code,
        error_detail: error.detail,
      },
      "websocket refused",
    );
    sendErrorOnSocket(socket, this.runtime.render, error, ctx.requestId);
  }

  private finish(ctx: RequestContext, res: ServerResponse): void {
    this.inFlight--;
    this.forwarder.closed(ctx.req);
    try {
      this.observe(ctx, res);
    } catch (error) {
      this.deps.logger.error({ err: error }, "observer failed");
    }
    if (this.inFlight === 0) this.drained?.();
  }

  /**
   * Graceful stop: readiness turns 503, the proxy listener stops accepting,
   * in-flight requests get `shutdown_grace_ms` to finish, then every
   * remaining connection is closed. Resolves when both listeners are closed.
   */
  async shutdown(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const grace = this.runtime.config.server.shutdown_grace_ms;
    this.deps.logger.info({ in_flight: this.inFlight, grace_ms: grace }, "draining");
    const proxyClosed = new Promise<void>((resolve) => this.proxyServer.close(() => resolve()));
    this.proxyServer.closeIdleConnections();
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, grace);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.proxyServer.closeAllConnections();
    for (const socket of this.upgradedSockets) socket.destroy();
    await proxyClosed;
    destroyUpstreams(this.runtime.upstreams);
    await this.tracker.stop();
    await this.lookup.stop();
    await this.deps.store.close();
    await new Promise<void>((resolve) => {
      this.adminServer.close(() => resolve());
      this.adminServer.closeAllConnections();
    });
    this.deps.metrics.inFlightReaders.delete(this.readInFlight);
    this.deps.logger.info({ in_flight: this.inFlight }, "stopped");
  }
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function createListener(
  config: Config,
  tls: { cert_file: string; key_file: string } | undefined,
  handler: Handler,
): Server {
  const { server } = config;
  const options = {
    maxHeaderSize: server.max_header_size,
    headersTimeout: server.headers_timeout_ms,
    requestTimeout: server.request_timeout_ms,
    keepAliveTimeout: server.keep_alive_timeout_ms,
    // Node enforces the two timeouts above only when it sweeps its connections (every 30 s by
    // default), so a 10 s headers timeout could take 40 s to fire.
    connectionsCheckingInterval: Math.min(1_000, server.headers_timeout_ms, server.request_timeout_ms),
  };
  const listener: Server = tls
    ? createHttpsServer(
        { ...options, cert: readFileSync(tls.cert_file), key: readFileSync(tls.key_file) },
        handler,
      )
    : createHttpServer(options, handler);
  listener.keepAliveTimeout = server.keep_alive_timeout_ms;
  return listener;
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
