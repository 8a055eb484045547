/**
 * The error catalogue: every response keygate itself produces (as opposed to
 * the upstream's) has a stable code, a default status and a public message.
 * Stages return a {@link GatewayError}; one renderer (`pipeline/respond.ts`)
 * turns it into bytes in the configured style.
 */
export const ERROR_CATALOGUE = {
  BAD_REQUEST: { status: 400, message: "Malformed request" },
  UNAUTHORIZED: { status: 401, message: "Missing or invalid Authorization header" },
  INVALID_API_KEY: { status: 403, message: "API key does not exist or has been revoked" },
  PLAN_LIMIT: { status: 403, message: "Your plan does not include API access" },
  INSUFFICIENT_PERMISSIONS: { status: 403, message: "Insufficient permissions for this operation" },
  NOT_FOUND: { status: 404, message: "No route matches this request" },
  RATE_LIMITED: { status: 429, message: "Rate limit exceeded. Try again in {retry_after} seconds." },
  INTERNAL_ERROR: { status: 500, message: "Internal gateway error" },
  BAD_GATEWAY: { status: 502, message: "Upstream unavailable" },
  STORE_UNAVAILABLE: { status: 503, message: "Service temporarily unavailable" },
  SHUTTING_DOWN: { status: 503, message: "Gateway is restarting; retry shortly" },
  UPSTREAM_TIMEOUT: { status: 504, message: "Upstream timed out" },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;
export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/**
 * An expected, client-facing outcome that ends a request. `detail` is for
 * logs only and never reaches the client; `params` fill `{placeholders}` in
 * the public message; `headers` are added to the response.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly detail: string | undefined;
  readonly params: Readonly<Record<string, string | number>> | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ErrorCode,
    options: {
      detail?: string;
      params?: Record<string, string | number>;
      headers?: Record<string, string>;
      cause?: unknown;
    } = {},
  ) {
    super(options.detail ?? code, { cause: options.cause });
    this.name = "GatewayError";
    this.code = code;
    this.detail = options.detail;
    this.params = options.params;
    this.headers = options.headers;
  }
}

/** A fault of keygate's own (a 500): what was thrown goes to the logs as the detail and cause. */
export function internalError(cause: unknown): GatewayError {
  return new GatewayError("INTERNAL_ERROR", { detail: (cause as Error)?.message ?? String(cause), cause });
}

/** A configuration that failed validation; `problems` lists every one found. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(`${file}: ${problems.length} configuration problem(s)\n${problems.map(formatProblem).join("\n")}`);
    this.name = "ConfigError";
  }
}

export interface ConfigProblem {
  /** Dotted YAML path, e.g. `routes[0].upstream.url`; empty for the document root. */
  path: string;
  /** 1-based line in the file, when the problem can be placed. */
  line: number | undefined;
  message: string;
}

export function formatProblem(problem: ConfigProblem): string {
  const where = problem.line === undefined ? "" : `line ${problem.line}: `;
  const path = problem.path === "" ? "(root)" : problem.path;
  return `  ${where}${path}: ${problem.message}`;
}
