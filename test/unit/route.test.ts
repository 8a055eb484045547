import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import type { RequestContext } from "../../src/pipeline/context.js";
import { type CompiledRoute, compileRoute, routeStage } from "../../src/pipeline/route.js";

/** Compiles the routes of a YAML `routes:` list (entries need only name and match). */
function table(routes: string): CompiledRoute[] {
  const withUpstreams = routes.replace(
    /^( {2}- name: .*)$/gm,
    '$1\n    upstream: { url: "http://127.0.0.1:1" }',
  );
  return parseConfig(`routes:\n${withUpstreams}`, "routes.yaml", {}).routes.map(compileRoute);
}

interface Probe {
  path: string;
  method?: string;
  host?: string;
  upgrade?: boolean;
}

/** Name of the route a request lands on, or the error code. */
function land(routes: CompiledRoute[], probe: Probe): string {
  const ctx = {
    req: { method: probe.method ?? "GET", headers: probe.host === undefined ? {} : { host: probe.host } },
    path: probe.path,
    upgrade: probe.upgrade ?? false,
    route: undefined,
  } as unknown as RequestContext;
  const error = routeStage(routes)(ctx);
  return error ? error.code : ctx.route!.name;
}

describe("path_prefix", () => {
  const routes = table(`
  - name: api
    match: { path_prefix: /api }
  - name: slash
    match: { path_prefix: /docs/ }
`);

  it.each(["/api", "/api/", "/api/x", "/api/x/y/"])("/api matches %s", (path) => {
    expect(land(routes, { path })).toBe("api");
  });

  it.each(["/apix", "/ap", "/", "/x/api", "/API"])("/api does not match %s", (path) => {
    expect(land(routes, { path })).toBe("NOT_FOUND");
  });

  it("a prefix written with a trailing slash still matches the bare prefix", () => {
    expect(land(routes, { path: "/docs" })).toBe("slash");
    expect(land(routes, { path: "/docs/a" })).toBe("slash");
    expect(land(routes, { path: "/docsx" })).toBe("NOT_FOUND");
  });

  it("/ matches everything", () => {
    const all = table(`
  - name: all
    match: { path_prefix: / }
`);
    for (const path of ["/", "/a", "/a/b/"]) expect(land(all, { path })).toBe("all");
  });
});

describe("path patterns", () => {
  const routes = table(`
  - name: posts
    match: { path: /users/*/posts }
  - name: files
    match: { path: /files/** }
  - name: versioned
    match: { path: /v1.0/*/** }
`);

  it.each([
    ["/users/42/posts", "posts"],
    ["/users/42/posts/", "posts"],
    ["/users/posts", "NOT_FOUND"],
    ["/users/1/2/posts", "NOT_FOUND"],
    ["/users/42/posts/7", "NOT_FOUND"],
  ])("* is exactly one segment: %s → %s", (path, expected) => {
    expect(land(routes, { path })).toBe(expected);
  });

  it.each([
    ["/files", "files"],
    ["/files/", "files"],
    ["/files/a", "files"],
    ["/files/a/b/c.txt", "files"],
    ["/filesystem", "NOT_FOUND"],
  ])("a trailing /** is any remainder: %s → %s", (path, expected) => {
    expect(land(routes, { path })).toBe(expected);
  });

  it("pattern text is literal apart from * and **", () => {
    expect(land(routes, { path: "/v1.0/a/b/c" })).toBe("versioned");
    expect(land(routes, { path: "/v1.0/a" })).toBe("versioned");
    expect(land(routes, { path: "/v1x0/a/b" })).toBe("NOT_FOUND");
    expect(land(routes, { path: "/v1.0" })).toBe("NOT_FOUND");
  });
});

describe("methods", () => {
  const routes = table(`
  - name: read
    match: { path_prefix: /r, methods: [GET] }
  - name: write
    match: { path_prefix: /w, methods: [POST, PUT] }
  - name: any
    match: { path_prefix: /any }
`);

  it("GET implies HEAD", () => {
    expect(land(routes, { path: "/r", method: "GET" })).toBe("read");
    expect(land(routes, { path: "/r", method: "HEAD" })).toBe("read");
    expect(land(routes, { path: "/r", method: "POST" })).toBe("NOT_FOUND");
  });

  it("only the listed methods match, and HEAD is not implied without GET", () => {
    expect(land(routes, { path: "/w", method: "PUT" })).toBe("write");
    expect(land(routes, { path: "/w", method: "POST" })).toBe("write");
    expect(land(routes, { path: "/w", method: "HEAD" })).toBe("NOT_FOUND");
    expect(land(routes, { path: "/w", method: "GET" })).toBe("NOT_FOUND");
  });

  it("no methods means every method", () => {
    for (const method of ["GET", "HEAD", "POST", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
      expect(land(routes, { path: "/any", method })).toBe("any");
  });
});

describe("host", () => {
  const routes = table(`
  - name: exact
    match: { path_prefix: /, host: api.example.com }
  - name: wildcard
    match: { path_prefix: /, host: "*.example.com" }
  - name: v6
    match: { path_prefix: /, host: "[::1]" }
`);

  it("matches the Host header case-insensitively, ignoring the port", () => {
    expect(land(routes, { path: "/", host: "api.example.com" })).toBe("exact");
    expect(land(routes, { path: "/", host: "API.Example.COM:8443" })).toBe("exact");
  });

  it("*.host matches any subdomain but not the bare domain or a lookalike", () => {
    expect(land(routes, { path: "/", host: "www.example.com" })).toBe("wildcard");
    expect(land(routes, { path: "/", host: "a.b.example.com:80" })).toBe("wildcard");
    expect(land(routes, { path: "/", host: "example.com" })).toBe("NOT_FOUND");
    expect(land(routes, { path: "/", host: "evilexample.com" })).toBe("NOT_FOUND");
    expect(land(routes, { path: "/", host: "www.example.com.evil.net" })).toBe("NOT_FOUND");
  });

  it("handles IPv6 literals and a missing Host header", () => {
    expect(land(routes, { path: "/", host: "[::1]:8080" })).toBe("v6");
    expect(land(routes, { path: "/" })).toBe("NOT_FOUND");
  });
});

describe("route order and upgrades", () => {
  const routes = table(`
  - name: narrow
    match: { path_prefix: /api/admin, methods: [GET] }
    websocket: false
  - name: broad
    match: { path_prefix: /api }
  - name: also-broad
    match: { path_prefix: /api }
`);

  it("the first matching route wins", () => {
    expect(land(routes, { path: "/api/admin/x" })).toBe("narrow");
    expect(land(routes, { path: "/api/admin/x", method: "POST" })).toBe("broad");
    expect(land(routes, { path: "/api/other" })).toBe("broad");
  });

  it("an upgrade skips routes with websocket: false", () => {
    expect(land(routes, { path: "/api/admin/x", upgrade: true })).toBe("broad");
    const only = table(`
  - name: nows
    match: { path_prefix: / }
    websocket: false
`);
    expect(land(only, { path: "/ws", upgrade: true })).toBe("NOT_FOUND");
    expect(land(only, { path: "/ws" })).toBe("nows");
  });
});

describe("strip_prefix", () => {
  const [stripped, trailing, kept] = table(`
  - name: stripped
    match: { path_prefix: /api }
    strip_prefix: true
  - name: trailing
    match: { path_prefix: /v2/ }
    strip_prefix: true
  - name: kept
    match: { path_prefix: /api }
`) as [CompiledRoute, CompiledRoute, CompiledRoute];

  it.each([
    ["/api", "/"],
    ["/api/", "/"],
    ["/api/x", "/x"],
    ["/api/x/y/", "/x/y/"],
  ])("strips /api from %s → %s", (path, expected) => {
    expect(stripped.upstreamPath(path)).toBe(expected);
  });

  it("strips a prefix written with a trailing slash without eating the next segment's slash", () => {
    expect(trailing.upstreamPath("/v2/users")).toBe("/users");
    expect(trailing.upstreamPath("/v2")).toBe("/");
  });

  it("leaves the path alone without strip_prefix", () => {
    expect(kept.upstreamPath("/api/x")).toBe("/api/x");
  });
});
