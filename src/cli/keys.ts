/**
 * `keygate keys ...`: a client of the admin API. The admin URL comes from
 * --admin-url or KEYGATE_ADMIN_URL, the token from KEYGATE_ADMIN_TOKEN (or
 * --token-file), never from a flag, so it stays out of shell history.
 * Every failure is one line on stderr and a non-zero exit.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

export class CliError extends Error {}

const DEFAULT_ADMIN_URL = "http://127.0.0.1:9090";
const REQUEST_TIMEOUT_MS = 30_000;
const IMPORT_BATCH = 500;

interface KeyView {
  id: string;
  prefix: string;
  label: string;
  plan: string;
  status: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  key?: string;
}

export const KEYS_USAGE = `Usage: keygate keys <command> [options]
  create --label <text> --plan <plan> [--expires-at <ISO time>] [--metadata k=v ...] [--format <name>]
  list [--prefix p] [--label text] [--plan p] [--status active|revoked] [--limit n] [--all]
  show <id>
  revoke <id>
  delete <id>
  rotate <id> [--grace <seconds>]
  import <file.json|file.ndjson> [--batch <n>]
  usage <id> [--days n]
Common: --admin-url <url> (or KEYGATE_ADMIN_URL, default ${DEFAULT_ADMIN_URL}),
        KEYGATE_ADMIN_TOKEN or --token-file <file>, --json for machine-readable output.
`;

type Out = { stdout: (text: string) => void; stderr: (text: string) => void };

export async function keysCommand(argv: string[], env = process.env, out: Out = defaultOut): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      "admin-url": { type: "string" },
      "token-file": { type: "string" },
      json: { type: "boolean", default: false },
      label: { type: "string" },
      plan: { type: "string" },
      "expires-at": { type: "string" },
      metadata: { type: "string", multiple: true },
      format: { type: "string" },
      prefix: { type: "string" },
      status: { type: "string" },
      limit: { type: "string" },
      all: { type: "boolean", default: false },
      grace: { type: "string" },
      batch: { type: "string" },
      days: { type: "string" },
    },
  });
  const client = new AdminClient(
    values["admin-url"] ?? env.KEYGATE_ADMIN_URL ?? DEFAULT_ADMIN_URL,
    values["token-file"]
      ? (await readFile(values["token-file"], "utf8")).trim()
      : (env.KEYGATE_ADMIN_TOKEN ?? ""),
  );
  const id = () => {
    const value = positionals[0];
    if (!value) throw new CliError(`keys ${command} needs a key id (see keygate keys list)`);
    return encodeURIComponent(value);
  };
  const print = (value: unknown, human: string) =>
    out.stdout(values.json ? `${JSON.stringify(value, null, 2)}\n` : human);

  switch (command) {
    case "create": {
      if (!values.label || !values.plan) throw new CliError("keys create needs --label and --plan");
      const key = await client.call<KeyView>("POST", "/v1/keys", {
        label: values.label,
        plan: values.plan,
        expires_at: values["expires-at"],
        metadata: parseMetadata(values.metadata),
        format: values.format,
      });
      print(
        key,
        `${key.key}\n\n` +
          `Key ${key.id} (${key.label}, plan ${key.plan}) created.\n` +
          "Copy the key now: it is shown this once and cannot be retrieved again.\n",
      );
      if (!values.json) out.stderr("warning: store the key securely; keygate keeps only its SHA-256 hash\n");
      return 0;
    }
    case "list": {
      const query = new URLSearchParams();
      for (const name of ["prefix", "label", "plan", "status"] as const) {
        const value = values[name];
        if (value !== undefined) query.set(name, value);
      }
      query.set("limit", values.limit ?? "100");
      const items: KeyView[] = [];
      let cursor: string | null = null;
      do {
        if (cursor) query.set("cursor", cursor);
        const page: { items: KeyView[]; next_cursor: string | null } = await client.call(
          "GET",
          `/v1/keys?${query}`,
        );
        items.push(...page.items);
        cursor = values.all ? page.next_cursor : null;
      } while (cursor);
      print(items, formatTable(items));
      return 0;
    }
    case "show": {
      const key = await client.call<KeyView>("GET", `/v1/keys/${id()}`);
      print(key, formatTable([key]));
      return 0;
    }
    case "revoke": {
      const key = await client.call<KeyView>("POST", `/v1/keys/${id()}/revoke`);
      print(key, `Key ${key.id} revoked. Every instance refuses it within a second.\n`);
      return 0;
    }
    case "delete": {
      const result = await client.call("DELETE", `/v1/keys/${id()}`);
      print(result, `Key ${positionals[0]} deleted.\n`);
      return 0;
    }
    case "rotate": {
      const grace = Number(values.grace ?? 0);
      if (!Number.isInteger(grace) || grace < 0)
        throw new CliError("--grace must be a whole number of seconds");
      const key = await client.call<KeyView & { previous: KeyView }>("POST", `/v1/keys/${id()}/rotate`, {
        grace_seconds: grace,
      });
      const until = key.previous.expires_at ? `keeps working until ${key.previous.expires_at}` : "is revoked";
      print(
        key,
        `${key.key}\n\nKey ${key.id} replaces ${key.previous.id}, which ${until}.\n` +
          "Copy the new key now: it is shown this once and cannot be retrieved again.\n",
      );
      return 0;
    }
    case "import": {
      const file = positionals[0];
      if (!file) throw new CliError("keys import needs a file (JSON array or one JSON object per line)");
      const entries = parseImportFile(await readFile(file, "utf8"), file);
      const batch = Number(values.batch ?? IMPORT_BATCH);
      const total = { imported: 0, skipped: 0, errors: [] as { index: number; message: string }[] };
      for (let start = 0; start < entries.length; start += batch) {
        const result = await client.call<typeof total>("POST", "/v1/keys/import", {
          keys: entries.slice(start, start + batch),
        });
        total.imported += result.imported;
        total.skipped += result.skipped;
        total.errors.push(...result.errors.map((e) => ({ index: e.index + start, message: e.message })));
        out.stderr(`\rimported ${Math.min(start + batch, entries.length)}/${entries.length}`);
      }
      out.stderr("\n");
      print(
        total,
        `${total.imported} imported, ${total.skipped} already present, ${total.errors.length} rejected\n` +
          total.errors.map((e) => `  entry ${e.index + 1}: ${e.message}\n`).join(""),
      );
      return total.errors.length === 0 ? 0 : 1;
    }
    case "usage": {
      const usage = await client.call<{ days: { date: string; requests: number }[] }>(
        "GET",
        `/v1/keys/${id()}/usage?days=${encodeURIComponent(values.days ?? "30")}`,
      );
      print(usage, usage.days.map((d) => `${d.date}  ${d.requests}\n`).join(""));
      return 0;
    }
    default:
      throw new CliError(command ? `unknown keys command "${command}"\n\n${KEYS_USAGE}` : KEYS_USAGE);
  }
}

const defaultOut: Out = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

class AdminClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    if (this.token === "")
      throw new CliError("no admin token: set KEYGATE_ADMIN_TOKEN (or pass --token-file)");
    let response: Response;
    try {
      response = await fetch(new URL(path, this.baseUrl), {
        method,
        headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const reason = cause?.code ?? cause?.message ?? (error as Error).message;
      throw new CliError(
        `cannot reach the admin API at ${this.baseUrl} (${reason}); is keygate running? (--admin-url)`,
      );
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? {} : JSON.parse(text);
    } catch {
      throw new CliError(`unexpected answer from ${this.baseUrl}: HTTP ${response.status}`);
    }
    if (response.ok) return parsed as T;
    const error = (parsed as { error?: { code?: string; message?: string } }).error;
    if (response.status === 401)
      throw new CliError("the admin API refused the token (check KEYGATE_ADMIN_TOKEN)");
    throw new CliError(error?.message ?? `HTTP ${response.status}`);
  }
}

function parseMetadata(pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs || pairs.length === 0) return undefined;
  const metadata: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(`--metadata expects key=value, got "${pair}"`);
    metadata[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return metadata;
}

function parseImportFile(text: string, file: string): unknown[] {
  const trimmed = text.trim();
  try {
    if (trimmed.startsWith("[")) return JSON.parse(trimmed) as unknown[];
    return trimmed
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as unknown);
  } catch (error) {
    throw new CliError(`${file}: not a JSON array or JSON lines (${(error as Error).message})`);
  }
}

function formatTable(items: readonly KeyView[]): string {
  if (items.length === 0) return "no keys\n";
  const rows = [
    ["ID", "PREFIX", "LABEL", "PLAN", "STATUS", "LAST USED", "CREATED", "EXPIRES"],
    ...items.map((k) => [
      k.id,
      k.prefix,
      k.label,
      k.plan,
      k.status,
      shortTime(k.last_used_at) ?? "never",
      shortTime(k.created_at) ?? "",
      shortTime(k.expires_at) ?? "-",
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] as string).length)));
  return rows
    .map(
      (row) =>
        `${row
          .map((cell, i) => cell.padEnd(widths[i] as number))
          .join("  ")
          .trimEnd()}\n`,
    )
    .join("");
}

function shortTime(iso: string | null): string | undefined {
  return iso === null ? undefined : iso.replace("T", " ").slice(0, 19);
}
