/**
 * One canonical form of the request path. The string this returns is the one
 * the router matches and the one forwarded upstream, so a path cannot look
 * like one route to keygate and like another to the upstream.
 *
 * - `%XX` of an unreserved character is decoded (`%41` → `A`, `%7E` → `~`);
 *   any other escape is kept with upper-case hex.
 * - a printable character RFC 3986 does not allow raw in a path (`"`, `<`,
 *   `>`, `` ` ``, `{`, `}`, `|`, `^`, `[`, `]`) is escaped, so the router, the
 *   log and the upstream see one path. (http-proxy-3's URL parse used to
 *   escape the first six on the way out only; the last four now reach the
 *   upstream escaped too.)
 * - `.` and `..` segments are removed (RFC 3986 §5.2.4; `..` stops at the root).
 * - runs of `/` are merged; a trailing `/` is kept.
 * - ambiguous targets are refused rather than guessed at: an encoded `/` or
 *   `\`, any backslash, NUL or control character, a dot segment spelled with
 *   `%2e` or carrying `;parameters` (`..;x`, which Tomcat and others read as
 *   `..`), malformed escapes, and targets that are not origin-form.
 *
 * The query is kept as sent, except for the characters the same URL parse
 * would escape (`"`, `'`, `<`, `>`), which are escaped here for the same
 * reason; a `#` (a fragment, which that parse would cut off) is refused.
 */

export type NormalizedTarget = { ok: true; path: string; query: string } | { ok: false; reason: string };

const HEX = "0123456789ABCDEF";

/** True for bytes RFC 3986 calls unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) ||
    (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x30 && code <= 0x39) ||
    code === 0x2d ||
    code === 0x2e ||
    code === 0x5f ||
    code === 0x7e
  );
}

/** pchar (RFC 3986) apart from escapes: unreserved, sub-delims, ":" and "@", as a regex class body. */
const PATH_CHARACTER_CLASS = "A-Za-z0-9\\-._~!$&'()*+,;=:@";

/** The same set as a table over ASCII, for the character-by-character path below. */
const IS_PATH_CHARACTER = (() => {
  const one = new RegExp(`[${PATH_CHARACTER_CLASS}]`);
  return Array.from({ length: 128 }, (_, code) => one.test(String.fromCharCode(code)));
})();

function percentEncoded(code: number): string {
  return `%${HEX[code >> 4]}${HEX[code & 15]}`;
}

/** Query characters a WHATWG URL parse escapes (special schemes), with their escapes. */
const QUERY_ESCAPES: Readonly<Record<string, string>> = { '"': "%22", "'": "%27", "<": "%3C", ">": "%3E" };

function canonicalQuery(query: string): string | undefined {
  if (!/["'<>#]/.test(query)) return query;
  if (query.includes("#")) return undefined;
  return query.replace(/["'<>]/g, (c) => QUERY_ESCAPES[c] as string);
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/**
 * Most paths need no work: only plain path characters, no escape, no `//`,
 * and no segment starting with a dot. Those are returned as they are.
 */
const ALREADY_CANONICAL = new RegExp(`^(?:\\/(?!\\.)[${PATH_CHARACTER_CLASS}]+)*\\/?$`);

/** Splits `target` (the request line's target) into a canonical path and its raw query (with `?`, or ""). */
export function normalizeTarget(target: string): NormalizedTarget {
  if (target.charCodeAt(0) !== 0x2f) {
    return { ok: false, reason: target === "*" ? "asterisk-form target" : "target is not origin-form" };
  }
  const queryAt = target.indexOf("?");
  const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
  const query = queryAt === -1 ? "" : canonicalQuery(target.slice(queryAt));
  if (query === undefined) return { ok: false, reason: "fragment in target" };
  if (ALREADY_CANONICAL.test(rawPath)) return { ok: true, path: rawPath, query };

  const segments: string[] = [];
  let segment = "";
  let encodedDot = false;
  let endsWithSlash = false;

  const closeSegment = (): string | undefined => {
    if (segment === "." || segment === "..") {
      if (encodedDot) return "encoded dot segment";
      if (segment === "..") segments.pop();
      endsWithSlash = true;
    } else if (segment !== "") {
      // Servlet containers strip `;parameters` first and read `..;x` as `..`: refuse, don't disagree.
      if (/^\.\.?;/.test(segment)) return "dot segment with parameters";
      segments.push(segment);
      endsWithSlash = false;
    }
    segment = "";
    encodedDot = false;
    return undefined;
  };

  for (let i = 1; i <= rawPath.length; i++) {
    const code = i < rawPath.length ? rawPath.charCodeAt(i) : 0x2f;
    if (code === 0x2f) {
      const problem = closeSegment();
      if (problem) return { ok: false, reason: problem };
      if (i < rawPath.length) endsWithSlash = true;
      continue;
    }
    if (code === 0x25) {
      const hi = hexValue(rawPath.charCodeAt(i + 1));
      const lo = hexValue(rawPath.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return { ok: false, reason: "malformed percent-encoding" };
      const byte = hi * 16 + lo;
      if (byte === 0x2f || byte === 0x5c) return { ok: false, reason: "encoded slash or backslash" };
      if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: "encoded control character" };
      if (isUnreserved(byte)) {
        if (byte === 0x2e) encodedDot = true;
        segment += String.fromCharCode(byte);
      } else {
        segment += percentEncoded(byte);
      }
      i += 2;
      continue;
    }
    if (code <= 0x20 || code >= 0x7f || code === 0x5c || code === 0x23) {
      return { ok: false, reason: "forbidden character in path" };
    }
    segment += IS_PATH_CHARACTER[code] ? rawPath[i] : percentEncoded(code);
  }
  const path = segments.length === 0 ? "/" : `/${segments.join("/")}${endsWithSlash ? "/" : ""}`;
  return { ok: true, path, query };
}
