/**
 * Raw query strings, read the way upstream servers read them (names and
 * values percent-decoded, `+` as space). One reader for every place that
 * looks for a parameter by name, so the credential taken from `?api_key=`
 * and the one redacted from the log are always the same parameter.
 */
export interface QueryPair {
  /** The pair as it appeared (`api%5Fkey=abc`). */
  readonly raw: string;
  readonly name: string;
  readonly value: string;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return text;
  }
}

/** The pairs of `query` (with or without its leading `?`), empty ones included, in order. */
export function parseQuery(query: string): QueryPair[] {
  const body = query.startsWith("?") ? query.slice(1) : query;
  const pairs: QueryPair[] = [];
  for (const raw of body.split("&")) {
    const eq = raw.indexOf("=");
    pairs.push({
      raw,
      name: decode(eq === -1 ? raw : raw.slice(0, eq)),
      value: eq === -1 ? "" : decode(raw.slice(eq + 1)),
    });
  }
  return pairs;
}

/** Joins raw pairs back into a query string (`""` when there are none). */
export function joinQuery(raws: readonly string[]): string {
  return raws.length === 0 ? "" : `?${raws.join("&")}`;
}
