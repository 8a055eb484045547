import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load.js";
import { renderRateLimit } from "../../src/ratelimit/headers.js";
import { compilePlans, withOverrides } from "../../src/ratelimit/policy.js";

const yaml = `
route_groups:
  media: [render, status]
plans:
  base:
    routes: [media]
    limits:
      - { name: render, routes: [render], windows: { minute: 10, hour: 100 } }
      - { name: all, windows: { day: 1000 } }
  gold:
    extends: base
    limits:
      - { name: render, routes: [render], windows: { minute: 50 } }
  closed:
    extends: gold
    api_access: false
routes:
  - { name: render, match: { path: /render }, upstream: { url: "http://127.0.0.1:1" } }
  - { name: status, match: { path_prefix: /status }, upstream: { url: "http://127.0.0.1:1" } }
  - { name: other, match: { path_prefix: /other }, upstream: { url: "http://127.0.0.1:1" } }
`;

describe("compilePlans", () => {
  const policies = compilePlans(parseConfig(yaml, "plans.yaml", {}));

  it("expands route groups into the allowed routes", () => {
    const base = policies.get("base")!;
    expect([...base.allowedRoutes!].sort()).toEqual(["render", "status"]);
    expect(base.apiAccess).toBe(true);
  });

  it("applies a rule to its routes only, and a rule without routes to every route", () => {
    const base = policies.get("base")!;
    expect(base.rulesFor("render").map((r) => r.name)).toEqual(["render", "all"]);
    expect(base.rulesFor("status").map((r) => r.name)).toEqual(["all"]);
  });

  it("inherits through extends; a child rule replaces the parent's of the same name", () => {
    const gold = policies.get("gold")!;
    const render = gold.rulesFor("render").find((r) => r.name === "render")!;
    expect(render.windows.map((w) => [w.name, w.limit])).toEqual([["minute", 50]]);
    expect(
      gold
        .rulesFor("render")
        .map((r) => r.name)
        .sort(),
    ).toEqual(["all", "render"]);
    expect([...gold.allowedRoutes!].sort()).toEqual(["render", "status"]);
    expect(policies.get("closed")!.apiAccess).toBe(false);
  });

  it("applies a key's own limits over the plan's", () => {
    const rule = policies.get("base")!.rulesFor("render")[0]!;
    const own = withOverrides(rule, { render: { minute: 3 } });
    expect(own.windows.map((w) => [w.name, w.limit])).toEqual([
      ["minute", 3],
      ["hour", 100],
    ]);
    expect(withOverrides(rule, { other: { minute: 3 } })).toBe(rule);
  });

  it("rejects unknown routes, unknown parents and cycles with their paths", () => {
    const broken = `
plans:
  a: { extends: b, routes: [nowhere] }
  b: { extends: a }
routes:
  - { name: r, match: { path_prefix: / }, upstream: { url: "http://127.0.0.1:1" } }
`;
    expect(() => parseConfig(broken, "broken.yaml", {})).toThrowError(
      /plans\.a\.routes\[0\].*unknown route/s,
    );
    expect(() => parseConfig(broken, "broken.yaml", {})).toThrowError(/cycle/);
  });
});

describe("renderRateLimit", () => {
  const policies = compilePlans(parseConfig(yaml, "plans.yaml", {}));
  const rule = policies.get("base")!.rulesFor("render")[0]!;
  const applied = rule.windows.map((window) => ({ rule, window }));
  const now = 1_700_000_010_000;

  it("reports the window with the fewest requests left, Reset in epoch seconds", () => {
    const { headers } = renderRateLimit(
      {
        allowed: true,
        now,
        windows: [
          { remaining: 7, resetAt: 1_700_000_040_000, retryAt: now, exceeded: false },
          { remaining: 3, resetAt: 1_700_003_600_000, retryAt: now, exceeded: false },
        ],
      },
      applied,
      { legacy: true, ietf: true },
    );
    expect(headers["x-ratelimit-limit"]).toBe("100");
    expect(headers["x-ratelimit-remaining"]).toBe("3");
    expect(headers["x-ratelimit-reset"]).toBe("1700003600");
    expect(headers["retry-after"]).toBeUndefined();
    expect(headers["ratelimit-policy"]).toBe('"render.minute";q=10;w=60, "render.hour";q=100;w=3600');
    expect(headers.ratelimit).toBe('"render.minute";r=7;t=30, "render.hour";r=3;t=3590');
  });

  it("on refusal reports the refusing window and a Retry-After that agrees with it", () => {
    const { headers, retryAfter } = renderRateLimit(
      {
        allowed: false,
        now,
        windows: [
          { remaining: 0, resetAt: 1_700_000_040_000, retryAt: 1_700_000_040_000, exceeded: true },
          { remaining: 50, resetAt: 1_700_003_600_000, retryAt: now, exceeded: false },
        ],
      },
      applied,
      { legacy: true, ietf: false },
    );
    expect(headers["x-ratelimit-limit"]).toBe("10");
    expect(headers["x-ratelimit-remaining"]).toBe("0");
    expect(headers["x-ratelimit-reset"]).toBe("1700000040");
    expect(retryAfter).toBe(30);
    expect(headers["retry-after"]).toBe("30");
    expect(headers.ratelimit).toBeUndefined();
  });
});
