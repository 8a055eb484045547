/**
 * Loads a YAML configuration: parse, interpolate `${VAR}` / `${VAR:-default}`
 * from the environment, validate against the schema, and freeze.
 *
 * Every problem is collected before failing, each with its YAML path and line,
 * so one `keygate config check` run shows all that needs fixing.
 */
import { readFile } from "node:fs/promises";
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument, visit } from "yaml";
import type { z } from "zod";
import { ConfigError, type ConfigProblem } from "../errors.js";
import { type Config, configSchema } from "./schema.js";

type Env = Readonly<Record<string, string | undefined>>;

const PLACEHOLDER = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Reads and validates `file`. Throws {@link ConfigError} listing every problem. */
export async function loadConfigFile(file: string, env: Env = process.env): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(file, [{ path: "", line: undefined, message: `cannot read file: ${reason}` }]);
  }
  return parseConfig(text, file, env);
}

/** Validates YAML text; `file` only names the source in problems. */
export function parseConfig(text: string, file = "<config>", env: Env = process.env): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined) =>
    offset === undefined ? undefined : lineCounter.linePos(offset).line;

  const problems: ConfigProblem[] = doc.errors.map((e) => ({
    path: "",
    line: lineOf(e.pos[0]),
    message: e.message.split("\n")[0] ?? e.message,
  }));
  if (problems.length > 0) throw new ConfigError(file, problems);

  problems.push(...interpolate(doc, env, lineOf));
  const result = configSchema.safeParse(doc.toJS() ?? {});
  if (!result.success) {
    // A value left empty by a missing variable is reported once, as the missing variable.
    const reported = new Set(problems.map((p) => p.path));
    for (const issue of result.error.issues) {
      for (const problem of describeIssue(issue, doc.contents, lineOf)) {
        if (!reported.has(problem.path)) problems.push(problem);
      }
    }
  }
  if (problems.length > 0 || !result.success) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigError(file, problems);
  }
  return deepFreeze(result.data);
}

/** Replaces placeholders in scalar values (never in keys), in place. `$$` is a literal `$`. */
function interpolate(
  doc: ReturnType<typeof parseDocument>,
  env: Env,
  lineOf: (offset: number | undefined) => number | undefined,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  visit(doc, {
    Scalar(key, node, path) {
      if (key === "key" || typeof node.value !== "string" || !node.value.includes("$")) return;
      const original = node.value;
      const missing: string[] = [];
      const replaced = original.replace(PLACEHOLDER, (match, name?: string, fallback?: string) => {
        if (match === "$$") return "$";
        const found = env[name as string];
        if (found !== undefined && found !== "") return found;
        if (fallback !== undefined) return fallback;
        missing.push(name as string);
        return "";
      });
      if (missing.length > 0) {
        problems.push({
          path: yamlPath([...path, node]),
          line: lineOf(node.range?.[0]),
          message: `environment variable ${missing.join(", ")} is not set and has no default (use \${NAME:-default})`,
        });
      }
      node.value = coerceScalar(replaced, original);
    },
  });
  return problems;
}

/** A value that was entirely one placeholder takes the type it spells (port: ${PORT} is a number). */
function coerceScalar(replaced: string, original: string): unknown {
  if (!/^\$\{[^}]*\}$/.test(original)) return replaced;
  if (/^-?\d+(\.\d+)?$/.test(replaced)) return Number(replaced);
  if (replaced === "true" || replaced === "false") return replaced === "true";
  return replaced;
}

/** The dotted path of the last node in `ancestry` (document → … → node). */
function yamlPath(ancestry: readonly unknown[]): string {
  const segments: (string | number)[] = [];
  for (let i = 0; i < ancestry.length - 1; i++) {
    const step = ancestry[i];
    const next = ancestry[i + 1];
    if (isPair(step) && isScalar(step.key)) segments.push(String(step.key.value));
    else if (isSeq(step)) segments.push(step.items.indexOf(next as never));
  }
  return formatPath(segments);
}

function formatPath(segments: readonly PropertyKey[]): string {
  let out = "";
  for (const s of segments)
    out += typeof s === "number" ? `[${s}]` : out === "" ? String(s) : `.${String(s)}`;
  return out;
}

/** Turns one schema issue into problems placed on the YAML node they concern. */
function describeIssue(
  issue: z.core.$ZodIssue,
  root: Node | null,
  lineOf: (offset: number | undefined) => number | undefined,
): ConfigProblem[] {
  const path = issue.path.filter((s): s is string | number => typeof s !== "symbol");
  const { node, depth } = deepestNode(root, path);
  const found = path.slice(0, depth);

  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const pair = isMap(node) ? node.items.find((p) => isScalar(p.key) && p.key.value === key) : undefined;
      const keyNode = pair?.key as Node | undefined;
      return {
        path: formatPath([...path, key]),
        line: lineOf(keyNode?.range?.[0] ?? node?.range?.[0]),
        message: "unknown key",
      };
    });
  }
  let message = issue.message;
  if (depth < path.length) message = `${formatPath(path.slice(depth)) || "value"} is required: ${message}`;
  return [{ path: formatPath(depth < path.length ? path : found), line: lineOf(node?.range?.[0]), message }];
}

/** The node at `path`, or the deepest ancestor that exists (for missing keys). */
function deepestNode(
  root: Node | null,
  path: readonly (string | number)[],
): { node: Node | null; depth: number } {
  let node = root;
  let depth = 0;
  for (const segment of path) {
    const next = (node as { get?: (k: unknown, keep: boolean) => unknown } | null)?.get?.(segment, true);
    if (next === undefined || next === null || typeof next !== "object") break;
    node = next as Node;
    depth += 1;
  }
  return { node, depth };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
