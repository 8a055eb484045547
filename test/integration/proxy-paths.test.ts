/**
 * The path the router matches is the path the upstream receives. Ambiguous
 * targets (encoded dots, encoded slashes, backslashes, ...) are refused with
 * 400 before any upstream sees them, so `/public/...` can never be turned
 * into `/private` behind the router's back.
 *
 * Requests go through `node:http` because fetch would resolve dot segments
 * itself before sending.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { json, send, startUpstream, type TestUpstream } from "../helpers/upstream.js";

let gateway: TestGateway;
let publicUpstream: TestUpstream;
let privateUpstream: TestUpstream;
let basedUpstream: TestUpstream;
let port: number;

beforeAll(async () => {
  publicUpstream = await startUpstream();
  privateUpstream = await startUpstream();
  basedUpstream = await startUpstream();
  gateway = await startGateway(`
routes:
  - name: public
    match: { path_prefix: /public }
    upstream: { url: "${publicUpstream.url}" }
    auth: { public: true }
  - name: private
    match: { path_prefix: /private }
    upstream: { url: "${privateUpstream.url}" }
    auth: { public: true }
  - name: stripped
    match: { path_prefix: /strip/ }
    strip_prefix: true
    upstream: { url: "${publicUpstream.url}" }
    auth: { public: true }
  - name: based
    match: { path_prefix: /based }
    strip_prefix: true
    upstream: { url: "${basedUpstream.url}/base/" }
    auth: { public: true }
`);
  port = gateway.addresses.proxy.port;
});

afterAll(async () => {
  await gateway.stop();
  await Promise.all([publicUpstream.close(), privateUpstream.close(), basedUpstream.close()]);
});

beforeEach(() => {
  for (const upstream of [publicUpstream, privateUpstream, basedUpstream]) upstream.requests.length = 0;
});

/** The target the upstream saw for one request through the gateway. */
async function upstreamTarget(path: string, upstream: TestUpstream): Promise<string> {
  const res = await send(port, { path });
  expect(res.status, `${path} → ${res.body.toString()}`).toBe(200);
  expect(upstream.requests).toHaveLength(1);
  return upstream.requests[0]!.url;
}

describe("ambiguous targets are refused before routing", () => {
  it.each([
    "/public/%2e%2e/private",
    "/public/%2E%2E/private",
    "/public/.%2e/private",
    "/public/%2e./private",
    "/public/..%2fprivate",
    "/public/..%2Fprivate",
    "/public/..%5cprivate",
    "/public/..\\private",
    "/public/%2e%2e%2fprivate",
    "/public/..;/private",
    "/public/a/%2e/b",
    "/public/%00",
    "/public/a%zz",
    "/public/a%2",
  ])("%s → 400, and no upstream sees it", async (path) => {
    const res = await send(port, { path });
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(json(res)).toEqual({ error: { code: "BAD_REQUEST", message: expect.any(String) } });
    expect(publicUpstream.requests).toHaveLength(0);
    expect(privateUpstream.requests).toHaveLength(0);
  });

  it.each([
    ["asterisk-form", "OPTIONS", "*"],
    ["absolute-form", "GET", "http://127.0.0.1/private/x"],
  ])("refuses a %s target with 400", async (_name, method, path) => {
    const res = await send(port, { method, path });
    expect(res.status).toBe(400);
    expect(privateUpstream.requests).toHaveLength(0);
    expect(publicUpstream.requests).toHaveLength(0);
  });
});

describe("the upstream receives exactly the normalized path", () => {
  it("decodes unreserved escapes, drops dot segments and duplicate slashes, keeps the query verbatim", async () => {
    expect(await upstreamTarget("/public/a/./b//c/%7Efoo?x=1&y=%2F&z=../..", publicUpstream)).toBe(
      "/public/a/b/c/~foo?x=1&y=%2F&z=../..",
    );
  });

  it("keeps reserved escapes, with upper-case hex", async () => {
    expect(await upstreamTarget("/public/%41%62/a%3ab%3F", publicUpstream)).toBe("/public/Ab/a%3Ab%3F");
  });

  it("escapes what RFC 3986 does not allow raw in a path and what a URL parser escapes in a query; the log shows the same", async () => {
    expect(await upstreamTarget('/public/a"b<c>`{d}|^[e]?q="<>\'&r={}', publicUpstream)).toBe(
      "/public/a%22b%3Cc%3E%60%7Bd%7D%7C%5E%5Be%5D?q=%22%3C%3E%27&r={}",
    );
    await expect
      .poll(() =>
        gateway.logLines().find((line) => line.msg === "request" && String(line.path).includes("/a%22b")),
      )
      .toMatchObject({ path: "/public/a%22b%3Cc%3E%60%7Bd%7D%7C%5E%5Be%5D", query: "?q=%22%3C%3E%27&r={}" });
  });

  it("refuses a fragment after the query with 400", async () => {
    const res = await send(port, { path: "/public/a?x=1#frag" });
    expect(res.status).toBe(400);
    expect(publicUpstream.requests).toHaveLength(0);
  });

  it("keeps a trailing slash", async () => {
    expect(await upstreamTarget("/public/dir/", publicUpstream)).toBe("/public/dir/");
  });

  it("routes on the resolved path: a plain .. into /private goes to the private upstream as /private/...", async () => {
    expect(await upstreamTarget("/public/../private/x", privateUpstream)).toBe("/private/x");
    expect(publicUpstream.requests).toHaveLength(0);
  });

  it("matches prefixes on segment boundaries only", async () => {
    const res = await send(port, { path: "/publicity" });
    expect(res.status).toBe(404);
    expect(publicUpstream.requests).toHaveLength(0);
  });

  it("strip_prefix removes the matched prefix from the normalized path", async () => {
    expect(await upstreamTarget("/strip//a/./b/%7Ec?q=1", publicUpstream)).toBe("/a/b/~c?q=1");
  });

  it("strip_prefix turns the bare prefix into /", async () => {
    expect(await upstreamTarget("/strip", publicUpstream)).toBe("/");
  });

  it("appends the path to the upstream URL's own path", async () => {
    expect(await upstreamTarget("/based/x/y?k=v", basedUpstream)).toBe("/base/x/y?k=v");
  });
});
