/**
 * The configuration schema: the single source of truth for what a keygate
 * YAML file may contain. `keygate config schema` emits the JSON Schema
 * derived from it (shipped as config/keygate.schema.json).
 *
 * Every object is strict: an unknown key is a problem, not silently ignored.
 */
import { isIP } from "node:net";
import { z } from "zod";
import { ERROR_CODES } from "../errors.js";
import { normalizeTarget } from "../pipeline/normalize.js";

const milliseconds = (defaultMs: number, description: string) =>
  z.number().int().positive().max(86_400_000).default(defaultMs).describe(description);

const port = z.number().int().min(0).max(65_535);

const tlsListener = z
  .strictObject({
    cert_file: z.string().min(1).describe("PEM certificate chain file."),
    key_file: z.string().min(1).describe("PEM private key file."),
  })
  .describe("Serve this listener over TLS.");

const listener = (defaultHost: string, defaultPort: number) =>
  z.strictObject({
    host: z.string().min(1).default(defaultHost),
    port: port.default(defaultPort).describe("0 picks a free port (useful in tests)."),
    tls: tlsListener.optional(),
  });

const cidr = z
  .string()
  .refine(
    (value) => {
      const [address, bits, ...rest] = value.split("/");
      if (rest.length > 0 || address === undefined) return false;
      const family = isIP(address);
      if (family === 0) return false;
      if (bits === undefined) return true;
      const n = Number(bits);
      return Number.isInteger(n) && n >= 0 && n <= (family === 4 ? 32 : 128);
    },
    { message: "expected an IP address or CIDR block, e.g. 10.0.0.0/8" },
  )
  .describe("An IP address or CIDR block.");

const httpMethod = z.enum(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

const pathString = z
  .string()
  .regex(/^\/[^?#\s]*$/, "must start with / and contain no query, fragment or space")
  // Requests are matched in canonical form (pipeline/normalize.ts); a path in another form
  // (`{`, `%41`, `//`, `/./`) could never match one.
  .superRefine((path, ctx) => {
    const canonical = normalizeTarget(path);
    if (!canonical.ok) ctx.addIssue({ code: "custom", message: `not a usable path: ${canonical.reason}` });
    else if (canonical.path !== path)
      ctx.addIssue({
        code: "custom",
        message: `requests are matched in canonical form: write ${canonical.path}`,
      });
  });

const routeMatch = z
  .strictObject({
    path_prefix: pathString
      .optional()
      .describe(
        "Match this path and everything below it, on segment boundaries (/api matches /api/x, not /apix).",
      ),
    path: pathString
      .optional()
      .describe("Match this path pattern: * matches exactly one segment, a trailing /** any remainder."),
    methods: z.array(httpMethod).min(1).optional().describe("Allowed methods; all when absent."),
    host: z
      .string()
      .min(1)
      .optional()
      .describe("Match the Host header (port ignored); a leading *. matches any subdomain."),
  })
  .refine((m) => (m.path_prefix === undefined) !== (m.path === undefined), {
    message: "set exactly one of path_prefix or path",
  });

const upstream = z.strictObject({
  url: z
    .url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" })
    .refine(
      (u) => !URL.canParse(u) || (!new URL(u).search && !new URL(u).hash),
      "must not carry a query or fragment",
    )
    .describe("Base URL; the route's (possibly stripped) path is appended to its path."),
  tls: z
    .strictObject({
      ca_file: z.string().min(1).optional().describe("PEM CA bundle that signs the upstream's certificate."),
      verify: z
        .boolean()
        .default(true)
        .describe("Verify the upstream certificate (never disable in production)."),
      server_name: z
        .string()
        .min(1)
        .optional()
        .describe("SNI / certificate name, when it differs from the URL host."),
    })
    .optional(),
  max_sockets: z
    .number()
    .int()
    .positive()
    .default(256)
    .describe("Connections kept to this upstream at most."),
  max_idle_sockets: z.number().int().nonnegative().default(64),
  idle_timeout_ms: milliseconds(
    4_000,
    "Pooled connections idle this long are closed; keep it below the upstream's keep-alive timeout.",
  ),
});

const headerName = z
  .string()
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, "not a valid header name")
  .toLowerCase();

const routeAuth = z.strictObject({
  public: z.boolean().default(false).describe("No API key needed on this route."),
  bearer: z.boolean().default(true).describe("Accept `Authorization: Bearer <key>`."),
  header: headerName.optional().describe("Also accept the key in this header (e.g. x-api-key)."),
  query: z
    .string()
    .min(1)
    .optional()
    .describe("Also accept the key in this query parameter (discouraged: URLs end up in logs)."),
});

const route = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]*$/i, "letters, digits, _ . - only")
    .describe("Unique; used in logs, metrics and plans."),
  match: routeMatch,
  upstream,
  strip_prefix: z.boolean().default(false).describe("Remove the matched path_prefix before forwarding."),
  auth: routeAuth.prefault({}),
  preserve_host: z
    .boolean()
    .default(false)
    .describe("Forward the client's Host header instead of the upstream URL's host."),
  websocket: z.boolean().default(true).describe("Allow WebSocket upgrades on this route."),
  rate_limit: z
    .strictObject({
      fail: z
        .enum(["closed", "open"])
        .default("closed")
        .describe("When the limit store is down: closed answers 503, open forwards without limiting."),
    })
    .prefault({}),
  timeouts: z
    .strictObject({
      connect_ms: milliseconds(5_000, "Time to open a connection to the upstream."),
      response_ms: milliseconds(30_000, "Time for the upstream to start answering (504 after it)."),
    })
    .prefault({}),
});

const logging = z.strictObject({
  level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  access_log: z
    .boolean()
    .default(true)
    .describe(
      "One info line per request. Off, requests still count in the metrics; events (reloads, faults) are still logged.",
    ),
  redact_headers: z
    .array(z.string().min(1).toLowerCase())
    .default([])
    .describe(
      "Extra credential headers never to log (Authorization, Cookie and Proxy-Authorization always are).",
    ),
  redact_query: z
    .array(z.string().min(1))
    .default([])
    .describe("Query parameters whose values are never logged."),
});

const server = z.strictObject({
  headers_timeout_ms: milliseconds(
    10_000,
    "Time a client has to send all request headers (slowloris guard).",
  ),
  request_timeout_ms: milliseconds(60_000, "Time a client has to send the whole request."),
  keep_alive_timeout_ms: milliseconds(5_000, "Idle time before a client keep-alive connection is closed."),
  max_header_size: z
    .number()
    .int()
    .min(1024)
    .max(1_048_576)
    .default(16_384)
    .describe("Bytes of request headers at most."),
  shutdown_grace_ms: milliseconds(10_000, "Time in-flight requests get to finish after SIGTERM."),
});

const errors = z.strictObject({
  style: z
    .enum(["nested", "flat", "problem"])
    .default("nested")
    .describe(
      'nested: {"error":{"code","message"}}; flat: {"error":"message"}; problem: RFC 9457 application/problem+json.',
    ),
  codes: z
    .partialRecord(
      z.enum(ERROR_CODES as [string, ...string[]]),
      z.strictObject({
        status: z.number().int().min(400).max(599).optional(),
        message: z
          .string()
          .min(1)
          .optional()
          .describe("Public message; {retry_after} is replaced where it applies."),
      }),
    )
    .default({})
    .describe("Per-code overrides of status and message."),
});

const keyFormat = z.strictObject({
  name: z.string().regex(/^[a-z0-9_-]+$/i),
  prefix: z.string().regex(/^[A-Za-z0-9_-]{1,16}$/, "1-16 letters, digits, _ or -"),
  alphabet: z.enum(["hex", "alphanumeric", "base32"]),
  length: z.number().int().min(16).max(128),
});

const DEFAULT_FORMATS = [
  { name: "reelplus", prefix: "rp_", alphabet: "hex" as const, length: 64 },
  { name: "gigareels", prefix: "giga_", alphabet: "alphanumeric" as const, length: 32 },
];

const keys = z.strictObject({
  formats: z
    .array(keyFormat)
    .min(1)
    .default(DEFAULT_FORMATS)
    .describe("Accepted key formats; several at once during a migration."),
  generate: z.string().optional().describe("Format of new keys (name); the first format when absent."),
  cache: z
    .strictObject({
      size: z.number().int().positive().default(100_000).describe("Verified keys kept per instance."),
      ttl_ms: milliseconds(10_000, "Longest a cached key is trusted without an invalidation event."),
      negative_ttl_ms: milliseconds(2_000, "How long an unknown key hash is remembered."),
    })
    .prefault({}),
  last_used_flush_ms: milliseconds(10_000, "Interval of batched last-used writes (the staleness bound)."),
});

const store = z.strictObject({
  type: z.enum(["embedded", "redis"]).default("embedded"),
  embedded: z
    .strictObject({
      path: z.string().min(1).default(".keygate/keys.json").describe("Key file (atomic replace)."),
    })
    .prefault({}),
  redis: z
    .strictObject({
      url: z
        .string()
        .regex(/^rediss?:\/\//, "expected redis:// or rediss://")
        .default("redis://127.0.0.1:6379"),
      namespace: z.string().default("keygate:").describe("Prefix of every Redis key keygate writes."),
      command_timeout_ms: milliseconds(50, "Time budget of one data-plane store call (503 after it)."),
      admin_timeout_ms: milliseconds(2_000, "Time budget of admin API store calls."),
      connect_timeout_ms: milliseconds(1_000, "Time to establish a connection."),
    })
    .prefault({}),
});

const auth = z.strictObject({
  failed_attempts: z
    .strictObject({
      limit: z.number().int().positive().default(30),
      window_ms: milliseconds(60_000, "Window of the failed-authentication counter."),
    })
    .prefault({})
    .describe(
      "Per client address and instance: beyond `limit` failures the address gets 429 with no store lookup.",
    ),
  strip_credential: z.boolean().default(true).describe("Remove the API key before forwarding."),
  identity_headers: z
    .strictObject({
      key_id: headerName.default("x-keygate-key-id"),
      plan: headerName.default("x-keygate-plan"),
      label: headerName.default("x-keygate-key-label").describe("Percent-encoded UTF-8."),
    })
    .prefault({}),
  signature: z
    .strictObject({
      secret: z.string().min(32, "use at least 32 characters"),
      header: headerName.default("x-keygate-signature"),
    })
    .optional()
    .describe("HMAC-SHA256 over the identity headers, so the upstream can verify they come from keygate."),
});

const windowLimits = z
  .strictObject({
    second: z.number().int().positive().optional(),
    minute: z.number().int().positive().optional(),
    hour: z.number().int().positive().optional(),
    day: z.number().int().positive().optional(),
    month: z.number().int().positive().optional().describe("30 days, epoch-aligned."),
  })
  .refine((w) => Object.values(w).some((v) => v !== undefined), "set at least one window")
  .describe("Requests allowed per window.");

const limitRule = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]*$/i, "letters, digits, _ . - only")
    .describe("Names the counter; a key's overrides refer to it."),
  routes: z
    .array(z.string().min(1))
    .min(1)
    .optional()
    .describe("Route or route-group names this rule applies to; every route of the plan when absent."),
  subject: z
    .enum(["key", "plan", "client"])
    .default("key")
    .describe("Whose requests share the counter: each key, the whole plan, or each client address."),
  windows: windowLimits,
  algorithm: z.enum(["fixed", "sliding"]).default("fixed"),
  shadow: z.boolean().default(false).describe("Count and report, never reject (to roll out a limit safely)."),
});

const plan = z.strictObject({
  extends: z
    .string()
    .optional()
    .describe("Inherit from this plan; fields set here win, rules with the same name replace."),
  api_access: z
    .boolean()
    .optional()
    .describe("false: every key of this plan gets 403 PLAN_LIMIT (default true)."),
  routes: z
    .array(z.string().min(1))
    .optional()
    .describe(
      "Routes or route groups keys of this plan may call (403 INSUFFICIENT_PERMISSIONS otherwise); all when absent.",
    ),
  limits: z.array(limitRule).default([]),
  description: z.string().optional(),
});

const rateLimit = z.strictObject({
  headers: z
    .strictObject({
      legacy: z.boolean().default(true).describe("X-RateLimit-Limit / -Remaining / -Reset (epoch seconds)."),
      ietf: z
        .boolean()
        .default(false)
        .describe("RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10)."),
    })
    .prefault({}),
  breaker: z
    .strictObject({
      failures: z
        .number()
        .int()
        .positive()
        .default(5)
        .describe("Consecutive store failures that open the circuit."),
      cooldown_ms: milliseconds(1_000, "Time the circuit stays open before a probe."),
    })
    .prefault({}),
  fail_open_log_interval_ms: milliseconds(10_000, "At most one fail-open log line per route per interval."),
});

const admin = z.strictObject({
  tokens: z
    .array(z.string())
    .default([])
    .transform((tokens) => tokens.filter((t) => t !== ""))
    .pipe(z.array(z.string().min(16, "admin tokens need at least 16 characters")))
    .describe("Bearer tokens of the admin API (empty entries are ignored; no token = admin API off)."),
  token_file: z.string().min(1).optional().describe("File with one admin token per line."),
});

const configSchemaBase = z.strictObject({
  listeners: z
    .strictObject({
      proxy: listener("0.0.0.0", 8080).prefault({}),
      admin: listener("127.0.0.1", 9090).prefault({}),
    })
    .prefault({}),
  server: server.prefault({}),
  trusted_proxies: z
    .array(cidr)
    .default([])
    .describe("Peers whose X-Forwarded-For/-Proto/-Host are believed; everyone else's are replaced."),
  logging: logging.prefault({}),
  errors: errors.prefault({}),
  store: store.prefault({}),
  keys: keys.prefault({}),
  auth: auth.prefault({}),
  plans: z
    .record(z.string().regex(/^[a-z0-9_-]+$/i), plan)
    .default({ default: { limits: [] } })
    .describe("Plans by name; every key belongs to one."),
  admin: admin.prefault({}),
  route_groups: z
    .record(z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/i), z.array(z.string().min(1)).min(1))
    .default({})
    .describe("Named sets of routes, usable wherever plans name routes."),
  rate_limit: rateLimit.prefault({}),
  reload: z
    .strictObject({
      watch: z
        .boolean()
        .default(false)
        .describe("Also reload when the file changes (SIGHUP always reloads)."),
    })
    .prefault({}),
  routes: z.array(route).min(1, "at least one route is required"),
});

export const configSchema = configSchemaBase.superRefine((config, ctx) => {
  const seen = new Map<string, number>();
  config.routes.forEach((r, index) => {
    const first = seen.get(r.name);
    if (first !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["routes", index, "name"],
        message: `duplicate route name "${r.name}" (first at routes[${first}])`,
      });
    } else seen.set(r.name, index);
    if (r.auth.public && (r.auth.header !== undefined || r.auth.query !== undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["routes", index, "auth"],
        message: "a public route takes no key sources",
      });
    }
    if (r.strip_prefix && r.match.path_prefix === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["routes", index, "strip_prefix"],
        message: "strip_prefix needs match.path_prefix",
      });
    }
  });
  checkPlanReferences(config, ctx);
  const formatNames = config.keys.formats.map((f) => f.name);
  if (config.keys.generate !== undefined && !formatNames.includes(config.keys.generate)) {
    ctx.addIssue({
      code: "custom",
      path: ["keys", "generate"],
      message: `unknown format "${config.keys.generate}" (formats: ${formatNames.join(", ")})`,
    });
  }
  config.keys.formats.forEach((f, index) => {
    if (config.keys.formats.some((other, j) => j < index && other.prefix === f.prefix)) {
      ctx.addIssue({
        code: "custom",
        path: ["keys", "formats", index, "prefix"],
        message: "prefix used by another format",
      });
    }
  });
});

type Issues = { addIssue(issue: { code: "custom"; path: (string | number)[]; message: string }): void };

function checkPlanReferences(config: z.output<typeof configSchemaBase>, ctx: Issues): void {
  const routeNames = new Set(config.routes.map((r) => r.name));
  for (const [group, members] of Object.entries(config.route_groups)) {
    if (routeNames.has(group))
      ctx.addIssue({ code: "custom", path: ["route_groups", group], message: "a route has this name" });
    members.forEach((m, i) => {
      if (!routeNames.has(m))
        ctx.addIssue({ code: "custom", path: ["route_groups", group, i], message: `unknown route "${m}"` });
    });
  }
  const known = (name: string) => routeNames.has(name) || Object.hasOwn(config.route_groups, name);
  for (const [name, p] of Object.entries(config.plans)) {
    if (p.extends !== undefined && !Object.hasOwn(config.plans, p.extends)) {
      ctx.addIssue({
        code: "custom",
        path: ["plans", name, "extends"],
        message: `unknown plan "${p.extends}"`,
      });
    }
    const seen = new Set<string>([name]);
    for (let parent = p.extends; parent !== undefined; parent = config.plans[parent]?.extends) {
      if (seen.has(parent)) {
        ctx.addIssue({
          code: "custom",
          path: ["plans", name, "extends"],
          message: "plans extend each other in a cycle",
        });
        break;
      }
      seen.add(parent);
    }
    p.routes?.forEach((r, i) => {
      if (!known(r))
        ctx.addIssue({
          code: "custom",
          path: ["plans", name, "routes", i],
          message: `unknown route or group "${r}"`,
        });
    });
    p.limits.forEach((rule, i) => {
      rule.routes?.forEach((r, j) => {
        if (!known(r)) {
          ctx.addIssue({
            code: "custom",
            path: ["plans", name, "limits", i, "routes", j],
            message: `unknown route or group "${r}"`,
          });
        }
      });
      if (p.limits.findIndex((other) => other.name === rule.name) !== i) {
        ctx.addIssue({
          code: "custom",
          path: ["plans", name, "limits", i, "name"],
          message: "duplicate rule name in this plan",
        });
      }
    });
  }
}

/** The validated configuration, deeply frozen. */
export type Config = z.output<typeof configSchema>;
export type RouteConfig = Config["routes"][number];

export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
}
