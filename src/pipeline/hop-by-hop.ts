/**
 * Hop-by-hop headers belong to one connection and are never passed on
 * (RFC 9110 §7.6.1): the fixed ones, and every header the `Connection` field
 * names. Used on the way in (sanitize) and on the way back (forward).
 */
import type { IncomingHttpHeaders } from "node:http";

/**
 * Deletes from `headers` every header `Connection` names, except those in `keep`, then every
 * name in `names`. `Connection` itself goes only if `names` lists it.
 */
export function removeHopByHop(
  headers: IncomingHttpHeaders,
  names: readonly string[],
  keep?: ReadonlySet<string>,
): void {
  const connection = headers.connection;
  // `keep-alive` and `close`, by far the most common values, name no other header.
  if (connection !== undefined && connection !== "keep-alive" && connection !== "close") {
    for (const token of connection.split(",")) {
      const name = token.trim().toLowerCase();
      if (name !== "" && !keep?.has(name)) delete headers[name];
    }
  }
  // A read is cheaper than deleting a name that is not there, the common case.
  for (const name of names) if (headers[name] !== undefined) delete headers[name];
}
