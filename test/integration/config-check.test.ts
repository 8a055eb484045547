/**
 * `keygate config check <file>` (the built CLI): every problem of a broken
 * file, each with its line, and exit status 1; exit 0 on a valid file.
 */
import { fileURLToPath } from "node:url";
import { describe, it } from "vitest";
import { runCli } from "../helpers/cli.js";

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/config/${name}`, import.meta.url));

// Each case is a separate process: run them side by side.
describe.concurrent("keygate config check", () => {
  it("reports all three mistakes with their line numbers and exits 1", async ({ expect }) => {
    const file = fixture("three-mistakes.yaml");
    const run = await runCli(["config", "check", file]);
    expect(run.code).toBe(1);
    const lines = run.stderr.trim().split("\n");
    expect(lines[0]).toBe(`${file}: 3 problem(s)`);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^ {2}line 3: listeners\.proxy\.port: .*number/),
      expect.stringMatching(
        /^ {2}line 9: routes\[0\]\.upstream\.url: expected an http:\/\/ or https:\/\/ URL/,
      ),
      "  line 10: routes[0].timeout: unknown key",
    ]);
    expect(run.stdout).toBe("");
  });

  it("accepts a valid file and exits 0", async ({ expect }) => {
    const file = fixture("valid.yaml");
    const run = await runCli(["config", "check", file]);
    expect(run).toMatchObject({ code: 0, stdout: `${file}: OK\n`, stderr: "" });
  });

  it("interpolates the environment: a missing variable is a problem on its line", async ({ expect }) => {
    const file = fixture("env-placeholders.yaml");
    const missing = await runCli(["config", "check", file]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(
      "line 9: routes[0].upstream.url: environment variable UPSTREAM_URL is not set and has no default",
    );

    const set = await runCli(["config", "check", file], { UPSTREAM_URL: "http://127.0.0.1:3000" });
    expect(set).toMatchObject({ code: 0, stderr: "" });
  });

  it("reports a duplicate route name with the line of the second one", async ({ expect }) => {
    const run = await runCli(["config", "check", fixture("duplicate-route.yaml")]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('line 5: routes[1].name: duplicate route name "api" (first at routes[0])');
  });

  it("reports a file that cannot be read and exits 1", async ({ expect }) => {
    const run = await runCli(["config", "check", fixture("no-such-file.yaml")]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/cannot read file/);
  });

  it("exits 2 on a usage error", async ({ expect }) => {
    const run = await runCli(["config", "check"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/expected: keygate config check <file>/);
  });
});
