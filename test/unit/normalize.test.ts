import { describe, expect, it } from "vitest";
import { normalizeTarget } from "../../src/pipeline/normalize.js";

function pathOf(target: string): string {
  const result = normalizeTarget(target);
  if (!result.ok) throw new Error(`${target} refused: ${result.reason}`);
  return result.path;
}

function refusal(target: string): string {
  const result = normalizeTarget(target);
  if (result.ok) throw new Error(`${target} accepted as ${result.path}`);
  return result.reason;
}

describe("normalizeTarget: canonical form", () => {
  it.each([
    ["/", "/"],
    ["/a/b", "/a/b"],
    // unreserved escapes are decoded, in either hex case
    ["/%41%42%43", "/ABC"],
    ["/%61%7a%30%39", "/az09"],
    ["/%7Efoo", "/~foo"],
    ["/%7efoo", "/~foo"],
    ["/a%2Db%5Fc%2ed", "/a-b_c.d"],
    // other escapes stay encoded, with upper-case hex
    ["/a%3ab", "/a%3Ab"],
    ["/a%3Ab", "/a%3Ab"],
    ["/%e2%82%ac", "/%E2%82%AC"],
    ["/a%20b", "/a%20b"],
    ["/a%25b", "/a%25b"], // an escaped % is never decoded twice
    ["/a%252e%252e", "/a%252e%252e"],
    // dot segments
    ["/a/./b", "/a/b"],
    ["/a/../b", "/b"],
    ["/a/b/../../c", "/c"],
    ["/../a", "/a"],
    ["/../../..", "/"],
    ["/a/..", "/"],
    ["/a/b/..", "/a/"],
    ["/a/.", "/a/"],
    ["/.", "/"],
    // duplicate slashes
    ["//a///b", "/a/b"],
    ["//", "/"],
    ["/a//", "/a/"],
    // trailing slash kept
    ["/a/b/", "/a/b/"],
    // dots inside a segment are just characters
    ["/a/..b/c..", "/a/..b/c.."],
    ["/a/.../b", "/a/.../b"],
    ["/a/.hidden", "/a/.hidden"],
    // a few sub-delims and specials RFC 3986 allows raw
    ["/a;b=c/d:e@f!$&'()*+,", "/a;b=c/d:e@f!$&'()*+,"],
    // printable characters it does not allow raw are escaped, as their escapes are kept
    ['/a"b<c>d`e{f}g|h^i[j]', "/a%22b%3Cc%3Ed%60e%7Bf%7Dg%7Ch%5Ei%5Bj%5D"],
    ["/a%22b%3c", "/a%22b%3C"],
  ])("%s → %s", (target, expected) => {
    expect(pathOf(target)).toBe(expected);
  });

  it("splits off the query and keeps it verbatim", () => {
    expect(normalizeTarget("/a/./b?x=%2F&y=../..&z")).toEqual({
      ok: true,
      path: "/a/b",
      query: "?x=%2F&y=../..&z",
    });
    expect(normalizeTarget("/a?")).toEqual({ ok: true, path: "/a", query: "?" });
    expect(normalizeTarget("/a")).toEqual({ ok: true, path: "/a", query: "" });
  });

  it("does not validate or decode the query", () => {
    expect(normalizeTarget("/a?%zz=%00")).toEqual({ ok: true, path: "/a", query: "?%zz=%00" });
  });

  it("escapes the query characters a URL parser would, and nothing else", () => {
    expect(normalizeTarget(`/a?q="<>'&r={}|^[]\`&s=%22`)).toEqual({
      ok: true,
      path: "/a",
      query: "?q=%22%3C%3E%27&r={}|^[]`&s=%22",
    });
  });

  it("is idempotent on its own output", () => {
    for (const target of ["/a/./b//c/%7Efoo/", "/%e2%82%ac/../x", "/a%3ab/..", '/a"b{c}']) {
      const once = pathOf(target);
      expect(pathOf(once)).toBe(once);
    }
  });
});

describe("normalizeTarget: ambiguous targets are refused", () => {
  it.each([
    ["/a%2fb", /slash/],
    ["/a%2Fb", /slash/],
    ["/..%2f", /slash/],
    ["/a%5cb", /slash or backslash/],
    ["/a%5Cb", /slash or backslash/],
  ])("encoded slash or backslash: %s", (target, reason) => {
    expect(refusal(target)).toMatch(reason);
  });

  it.each(["/a\\b", "/..\\secret", "/a\\"])("raw backslash: %s", (target) => {
    expect(refusal(target)).toMatch(/forbidden character/);
  });

  it.each(["/a%00", "/%00/x", "/a%0d%0aSet-Cookie:x", "/a%7f", "/a%1F"])("encoded control: %s", (target) => {
    expect(refusal(target)).toMatch(/control/);
  });

  it.each(["/a\u0000b", "/a\tb", "/a b", "/a\u007fb", "/caf\u00e9", "/a#frag"])(
    "raw control, space, non-ASCII or fragment: %j",
    (target) => {
      expect(refusal(target)).toMatch(/forbidden character/);
    },
  );

  it.each(["/a?x=1#frag", "/a?#", "/?x=1#&key=2"])("fragment after the query: %j", (target) => {
    expect(refusal(target)).toBe("fragment in target");
  });

  it.each([
    "/%2e%2e/secret",
    "/%2E%2E/secret",
    "/a/.%2e/secret",
    "/a/%2e./secret",
    "/a/%2e/b",
    "/a/%2E",
    "/a/%2e%2e",
  ])("dot segment spelled with %%2e: %s", (target) => {
    expect(refusal(target)).toMatch(/encoded dot segment/);
  });

  it.each(["/public/..;/private", "/a/..;jsessionid=1/b", "/a/.;/b", "/a/.%2e;x/b", "/a/..;"])(
    "dot segment with ;parameters (read as .. by servlet containers): %s",
    (target) => {
      expect(refusal(target)).toBe("dot segment with parameters");
    },
  );

  it.each([
    ["/a/b;v=1/c", "/a/b;v=1/c"],
    ["/a/;../b", "/a/;../b"],
    ["/a/...;x", "/a/...;x"],
    ["/a/..b;x", "/a/..b;x"],
  ])("other segments with ;parameters pass: %s", (target, expected) => {
    expect(pathOf(target)).toBe(expected);
  });

  it.each(["/a%zz", "/a%", "/a%2", "/a%g0", "/%%41"])("malformed escape: %s", (target) => {
    expect(refusal(target)).toMatch(/malformed percent-encoding/);
  });

  it("asterisk-form", () => {
    expect(refusal("*")).toBe("asterisk-form target");
  });

  it.each(["http://example.com/a", "https://example.com", "example.com:443", "a/b", ""])(
    "not origin-form: %j",
    (target) => {
      expect(refusal(target)).toBe("target is not origin-form");
    },
  );
});
