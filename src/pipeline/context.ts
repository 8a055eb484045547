import type { IncomingMessage } from "node:http";
import type { GatewayError } from "../errors.js";
import type { KeyRecord } from "../keys/record.js";
import type { CompiledRoute } from "./route.js";

/** Who is calling: the verified key. */
export interface Principal {
  readonly key: KeyRecord;
}

/**
 * What the pipeline knows about one request. Stages fill it in order; the
 * observer reads it when the response closes.
 */
export interface RequestContext {
  readonly req: IncomingMessage;
  /** `performance.now()` when the request arrived. */
  readonly startedAt: number;
  /** True for a WebSocket upgrade. */
  readonly upgrade: boolean;
  requestId: string;
  /** The client as far as trusted proxies let us see (see `sanitize.ts`). */
  clientAddress: string;
  /** Canonical path (see `normalize.ts`): matched, logged and forwarded. */
  path: string;
  /** Raw query string including `?`, or "". */
  query: string;
  route: CompiledRoute | undefined;
  /** Set by `authenticate` on protected routes. */
  principal: Principal | undefined;
  /** Headers keygate adds to the response (rate-limit state), whoever answers. */
  responseHeaders: Record<string, string> | undefined;
  /** Set when the request was answered by keygate rather than the upstream. */
  error: GatewayError | undefined;
  upstreamStartedAt: number;
  /** Milliseconds until the upstream's response headers; -1 when not forwarded. */
  upstreamMs: number;
}

/** The context of a request that has just arrived: stages fill in the rest. */
export function createContext(req: IncomingMessage, upgrade: boolean): RequestContext {
  return {
    req,
    startedAt: performance.now(),
    upgrade,
    requestId: "",
    clientAddress: "",
    path: "",
    query: "",
    route: undefined,
    principal: undefined,
    responseHeaders: undefined,
    error: undefined,
    upstreamStartedAt: 0,
    upstreamMs: -1,
  };
}

/**
 * One pipeline step. Returns nothing to pass the request on, or the error
 * that ends it. May be async; a synchronous stage costs no promise.
 */
export type Stage = (ctx: RequestContext) => GatewayError | undefined | Promise<GatewayError | undefined>;
