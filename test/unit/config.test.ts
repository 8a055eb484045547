// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${VAR} placeholders are the subject of these tests
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadConfigFile, parseConfig } from "../../src/config/load.js";
import { configJsonSchema } from "../../src/config/schema.js";
import { ConfigError, type ConfigProblem } from "../../src/errors.js";

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/config/${name}`, import.meta.url));

const ROUTES = `routes:
  - name: api
    match: { path_prefix: / }
    upstream: { url: "http://127.0.0.1:3000" }
`;

/** The problems `parseConfig` reports for `text` (fails the test when it accepts it). */
function problems(text: string, env: Record<string, string> = {}): ConfigProblem[] {
  try {
    parseConfig(text, "test.yaml", env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error("configuration was accepted");
}

describe("environment interpolation", () => {
  it("replaces ${VAR} and ${VAR:-default}", () => {
    const config = parseConfig(
      `listeners:
  proxy:
    host: \${HOST}
    port: \${PORT:-8081}
${ROUTES.replace('"http://127.0.0.1:3000"', '"http://${UP_HOST:-localhost}:${UP_PORT}/v1"')}`,
      "test.yaml",
      { HOST: "127.0.0.2", UP_PORT: "4000" },
    );
    expect(config.listeners.proxy.host).toBe("127.0.0.2");
    expect(config.listeners.proxy.port).toBe(8081);
    expect(config.routes[0]!.upstream.url).toBe("http://localhost:4000/v1");
  });

  it("prefers a set variable over the default, and treats an empty one as unset", () => {
    const text = `listeners:\n  proxy:\n    port: \${PORT:-8081}\n${ROUTES}`;
    expect(parseConfig(text, "t.yaml", { PORT: "9000" }).listeners.proxy.port).toBe(9000);
    expect(parseConfig(text, "t.yaml", { PORT: "" }).listeners.proxy.port).toBe(8081);
  });

  it("gives a value that is exactly one placeholder the type it spells", () => {
    const config = parseConfig(
      `listeners:
  proxy:
    port: \${PORT}
server:
  shutdown_grace_ms: \${GRACE:-2500}
${ROUTES}    websocket: \${WS}
    strip_prefix: \${STRIP:-false}
`,
      "test.yaml",
      { PORT: "8081", WS: "false" },
    );
    expect(config.listeners.proxy.port).toBe(8081);
    expect(config.server.shutdown_grace_ms).toBe(2500);
    expect(config.routes[0]!.websocket).toBe(false);
    expect(config.routes[0]!.strip_prefix).toBe(false);
  });

  it("keeps a placeholder embedded in text a string", () => {
    const config = parseConfig(
      `errors:\n  codes:\n    NOT_FOUND: { message: "route \${N} missing" }\n${ROUTES}`,
      "test.yaml",
      { N: "42" },
    );
    expect(config.errors.codes.NOT_FOUND?.message).toBe("route 42 missing");
  });

  it("reports a value that does not coerce to the schema's type", () => {
    const found = problems(`listeners:\n  proxy:\n    port: \${PORT}\n${ROUTES}`, { PORT: "80a" });
    expect(found).toEqual([
      { path: "listeners.proxy.port", line: 3, message: expect.stringMatching(/expected number/) },
    ]);
  });

  it("reads $$ as a literal $ and does not expand what follows it", () => {
    const config = parseConfig(
      `errors:\n  codes:\n    NOT_FOUND: { message: "costs $$5, see $\${HOME_PAGE}" }\n${ROUTES}`,
      "test.yaml",
      {},
    );
    expect(config.errors.codes.NOT_FOUND?.message).toBe("costs $5, see ${HOME_PAGE}");
  });

  it("interpolates sequence items", () => {
    // (unquoted in block style: in a flow sequence YAML would read the braces as a mapping)
    const config = parseConfig(
      `trusted_proxies:\n  - \${LB}\n  - "\${NET:-10.0.0.0/8}"\n${ROUTES}`,
      "test.yaml",
      {
        LB: "192.0.2.7",
      },
    );
    expect(config.trusted_proxies).toEqual(["192.0.2.7", "10.0.0.0/8"]);
  });

  it("reports every missing variable with its path and line", () => {
    const found = problems(
      `listeners:
  proxy:
    host: \${PROXY_HOST}
  admin:
    host: "\${ADMIN_HOST}"
${ROUTES}`,
    );
    const missing = found.filter((p) => p.message.includes("environment variable"));
    expect(missing).toEqual([
      { path: "listeners.proxy.host", line: 3, message: expect.stringContaining("PROXY_HOST is not set") },
      { path: "listeners.admin.host", line: 5, message: expect.stringContaining("ADMIN_HOST is not set") },
    ]);
  });

  it("never interpolates keys", () => {
    const found = problems(`\${KEY}: 1\n${ROUTES}`, { KEY: "server" });
    expect(found).toEqual([{ path: "${KEY}", line: 1, message: "unknown key" }]);
  });
});

describe("validation", () => {
  it("rejects unknown keys, each on its own line", () => {
    const found = problems(`listners:
  proxy: { port: 1 }
${ROUTES}    timeout: 5
    upstream_url: x
`);
    expect(found).toEqual([
      { path: "listners", line: 1, message: "unknown key" },
      { path: "routes[0].timeout", line: 7, message: "unknown key" },
      { path: "routes[0].upstream_url", line: 8, message: "unknown key" },
    ]);
  });

  it("rejects unknown keys in nested objects", () => {
    const found = problems(`server:\n  shutdown_grace: 5\n${ROUTES}`);
    expect(found).toEqual([{ path: "server.shutdown_grace", line: 2, message: "unknown key" }]);
  });

  it("rejects duplicate route names, pointing at the second", () => {
    const found = problems(`${ROUTES}  - name: api
    match: { path_prefix: /other }
    upstream: { url: "http://127.0.0.1:3001" }
`);
    expect(found).toEqual([
      { path: "routes[1].name", line: 5, message: 'duplicate route name "api" (first at routes[0])' },
    ]);
  });

  it("refuses a route path that no canonical request path could equal, naming the form to write", () => {
    const route = (name: string, match: string) =>
      `  - name: ${name}\n    match: ${match}\n    upstream: { url: "http://127.0.0.1:3001" }\n`;
    const found = problems(
      `routes:\n${route("braces", "{ path_prefix: '/v1/{tenant}' }")}${route("escape", "{ path: /%41pi/* }")}${route("slashes", "{ path_prefix: /a//b }")}${route("fine", "{ path: /a/*/b/** }")}`,
    );
    expect(found.map((p) => [p.path, p.message])).toEqual([
      ["routes[0].match.path_prefix", "requests are matched in canonical form: write /v1/%7Btenant%7D"],
      ["routes[1].match.path", "requests are matched in canonical form: write /Api/*"],
      ["routes[2].match.path_prefix", "requests are matched in canonical form: write /a/b"],
    ]);
  });

  it("reports a duplicate route name together with other problems", () => {
    const found = problems(`${ROUTES}  - name: api
    match: { path_prefix: /other }
    upstream: { url: "http://127.0.0.1:3001" }
    bogus: true
`);
    expect(found.map((p) => [p.line, p.path])).toEqual([
      [5, "routes[1].name"],
      [8, "routes[1].bogus"],
    ]);
  });

  it("places a missing required key on its parent", () => {
    const found = problems(`routes:\n  - name: api\n    match: { path_prefix: / }\n`);
    expect(found).toEqual([
      { path: "routes[0].upstream", line: 2, message: expect.stringMatching(/^upstream is required/) },
    ]);
  });

  it("reports YAML syntax errors and duplicate keys with their line", () => {
    expect(problems(`${ROUTES}routes: []\n`)).toEqual([
      { path: "", line: 5, message: expect.stringMatching(/unique/) },
    ]);
    expect(problems(`server: [\n${ROUTES}`)[0]).toMatchObject({ path: "", line: expect.any(Number) });
  });

  it("requires at least one route", () => {
    expect(problems("routes: []\n")).toEqual([
      { path: "routes", line: 1, message: "at least one route is required" },
    ]);
  });

  it("fills defaults", () => {
    const config = parseConfig(ROUTES, "test.yaml", {});
    expect(config.listeners.proxy).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(config.listeners.admin).toEqual({ host: "127.0.0.1", port: 9090 });
    expect(config.routes[0]).toMatchObject({
      strip_prefix: false,
      preserve_host: false,
      websocket: true,
      timeouts: { connect_ms: 5_000, response_ms: 30_000 },
    });
    expect(config.errors.style).toBe("nested");
  });

  it("returns a deeply frozen configuration", () => {
    const config = parseConfig(ROUTES, "test.yaml", {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.routes)).toBe(true);
    expect(Object.isFrozen(config.routes[0]!.match)).toBe(true);
    expect(Object.isFrozen(config.listeners.proxy)).toBe(true);
    expect(() => {
      (config.routes[0] as { name: string }).name = "other";
    }).toThrow(TypeError);
    expect(() => {
      (config.routes as unknown[]).push({});
    }).toThrow(TypeError);
  });
});

describe("loadConfigFile", () => {
  it("reports all three mistakes of the fixture with their lines", async () => {
    const error = await loadConfigFile(fixture("three-mistakes.yaml"), {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => [p.line, p.path])).toEqual([
      [3, "listeners.proxy.port"],
      [9, "routes[0].upstream.url"],
      [10, "routes[0].timeout"],
    ]);
  });

  it("loads the valid fixture", async () => {
    const config = await loadConfigFile(fixture("valid.yaml"), {});
    expect(config.routes.map((r) => r.name)).toEqual(["api", "docs"]);
  });

  it("reports an unreadable file as a problem", async () => {
    const error = await loadConfigFile(fixture("does-not-exist.yaml"), {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      { path: "", line: undefined, message: expect.stringMatching(/^cannot read file: .*ENOENT/) },
    ]);
  });
});

describe("config/keygate.schema.json", () => {
  it("is the schema the code validates with (regenerate with npm run schema)", () => {
    const committed = readFileSync(new URL("../../config/keygate.schema.json", import.meta.url), "utf8");
    expect(JSON.parse(committed)).toEqual(configJsonSchema());
  });
});
