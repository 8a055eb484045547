/**
 * First stage: make the inbound headers safe to act on and to forward.
 * Hop-by-hop headers go (RFC 9110 §7.6.1, including every header the client
 * names in `Connection`), X-Forwarded-* become keygate's own unless the direct
 * peer is a trusted proxy, and the request gets an id.
 */
import { randomUUID } from "node:crypto";
import { BlockList, isIP, isIPv6 } from "node:net";
import { GatewayError } from "../errors.js";
import type { RequestContext } from "./context.js";
import { withoutHopByHop } from "./headers.js";

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
];

/** Named in `Connection`, the host still reaches the upstream: it needs it. */
const KEPT_WHEN_NAMED: ReadonlySet<string> = new Set(["host"]);

/** Headers a request may carry once only; a second copy makes it ambiguous (RFC 9110 §5.3). */
const SINGLE_VALUED = new Set(["host", "authorization", "content-length"]);
/** Their name lengths: any other raw header name is passed over without lower-casing it. */
const SINGLE_VALUED_LENGTHS = new Set([...SINGLE_VALUED].map((name) => name.length));

const VALID_REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export interface SanitizeOptions {
  /** Peers whose X-Forwarded-* are believed. */
  trustedProxies: readonly string[];
  /** Protocol of the listener, for X-Forwarded-Proto. */
  protocol: "http" | "https";
  /** Inbound headers that only keygate may set (identity headers); always removed. */
  reservedHeaders?: readonly string[];
}

export function compileTrustedProxies(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split("/") as [string, string | undefined];
    const family = isIPv6(address) ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return list;
}

/** Node reports IPv4 peers on dual-stack sockets as `::ffff:a.b.c.d`. */
export function plainAddress(address: string | undefined): string {
  if (!address) return "";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

function isTrusted(list: BlockList, empty: boolean, address: string): boolean {
  if (empty) return false;
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 6 ? "ipv6" : "ipv4");
}

export function sanitizeStage(options: SanitizeOptions) {
  const trusted = compileTrustedProxies(options.trustedProxies);
  const noneTrusted = options.trustedProxies.length === 0;
  const removed = [...HOP_BY_HOP, ...(options.reservedHeaders ?? [])];
  // From a peer that is not a trusted proxy, these are claims nobody can check.
  const removedFromUntrusted = [...removed, "forwarded", "x-real-ip"];

  return function sanitize(ctx: RequestContext): GatewayError | undefined {
    const { req } = ctx;
    const headers = req.headers;

    // Node keeps only the first of some duplicated headers; look at the raw list.
    const raw = req.rawHeaders;
    for (let i = 0, seen = 0; i < raw.length; i += 2) {
      if (!SINGLE_VALUED_LENGTHS.has((raw[i] as string).length)) continue;
      const name = (raw[i] as string).toLowerCase();
      if (SINGLE_VALUED.has(name)) {
        const bit = name === "host" ? 1 : name === "authorization" ? 2 : 4;
        if (seen & bit)
          return new GatewayError(bit === 2 ? "UNAUTHORIZED" : "BAD_REQUEST", {
            detail: `duplicate ${name} header`,
            headers: bit === 2 ? { "www-authenticate": 'Bearer realm="keygate"' } : undefined,
          });
        seen |= bit;
      }
    }

    const requestId = headers["x-request-id"];
    ctx.requestId =
      typeof requestId === "string" && VALID_REQUEST_ID.test(requestId) ? requestId : randomUUID();
    // Read before the Connection tokens go: a handshake's `Connection: Upgrade` names it.
    const upgrade = ctx.upgrade ? headers.upgrade : undefined;
    const peer = plainAddress(req.socket.remoteAddress);
    const fromTrusted = isTrusted(trusted, noneTrusted, peer);

    const kept = withoutHopByHop(headers, fromTrusted ? removed : removedFromUntrusted, KEPT_WHEN_NAMED);
    req.headers = kept;
    kept["x-request-id"] = ctx.requestId;
    // Node re-frames a streamed body itself once it sees this header; without it a
    // chunked GET body would be sent unframed.
    if (kept["transfer-encoding"] !== undefined) kept["transfer-encoding"] = "chunked";
    if (upgrade !== undefined) {
      // The upgrade handshake is the one hop-by-hop exchange a proxy must pass on.
      kept.connection = "upgrade";
      kept.upgrade = upgrade;
    }

    if (fromTrusted) {
      const chain = kept["x-forwarded-for"];
      kept["x-forwarded-for"] = chain ? `${chain}, ${peer}` : peer;
      kept["x-forwarded-proto"] ??= options.protocol;
      kept["x-forwarded-host"] ??= kept.host ?? "";
      ctx.clientAddress = firstUntrusted(kept["x-forwarded-for"], trusted) ?? peer;
    } else {
      kept["x-forwarded-for"] = peer;
      kept["x-forwarded-proto"] = options.protocol;
      kept["x-forwarded-host"] = kept.host ?? "";
      ctx.clientAddress = peer;
    }
    return undefined;
  };
}

/** Walks X-Forwarded-For from the right, past trusted hops, to the client. */
function firstUntrusted(chain: string, trusted: BlockList): string | undefined {
  const hops = chain.split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = plainAddress((hops[i] as string).trim());
    if (hop === "") continue;
    if (isIP(hop) === 0) return undefined;
    if (!isTrusted(trusted, false, hop)) return hop;
  }
  return undefined;
}
