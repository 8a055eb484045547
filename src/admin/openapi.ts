/** OpenAPI 3.1 description of the admin API (served at GET /v1/openapi.json). */

const keyView = {
  type: "object",
  required: ["id", "prefix", "label", "plan", "status", "created_at"],
  properties: {
    id: { type: "string", pattern: "^key_[0-9a-f]{24}$" },
    prefix: { type: "string", description: "First 10 characters of the key, in clear." },
    label: { type: "string" },
    plan: { type: "string" },
    status: { type: "string", enum: ["active", "revoked"] },
    created_at: { type: "string", format: "date-time" },
    last_used_at: {
      type: ["string", "null"],
      format: "date-time",
      description: "Batched; see README for the staleness bound.",
    },
    expires_at: { type: ["string", "null"], format: "date-time" },
    metadata: { type: "object", additionalProperties: { type: "string" } },
    limits: {
      type: "object",
      description: "The key's own limits, by plan rule name and window; they replace the plan's.",
      additionalProperties: { type: "object", additionalProperties: { type: "integer", minimum: 1 } },
    },
    rotated_to: { type: ["string", "null"], description: "Id of the key that replaced this one." },
  },
} as const;

const withKey = {
  allOf: [
    { $ref: "#/components/schemas/Key" },
    {
      type: "object",
      required: ["key"],
      properties: { key: { type: "string", description: "The full key. Shown once." } },
    },
  ],
};

const error = {
  type: "object",
  properties: {
    error: { type: "object", properties: { code: { type: "string" }, message: { type: "string" } } },
  },
};

const idParam = { name: "id", in: "path", required: true, schema: { type: "string" } };
const errors = {
  "401": {
    description: "Missing or wrong admin token",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  },
  "404": {
    description: "Unknown key id, or the admin API is off",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  },
  "503": {
    description: "Key store unavailable",
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  },
};
const jsonOf = (schema: unknown) => ({ content: { "application/json": { schema } } });

export const OPENAPI_DOCUMENT = {
  openapi: "3.1.0",
  info: { title: "keygate admin API", version: "1" },
  components: {
    securitySchemes: { adminToken: { type: "http", scheme: "bearer" } },
    schemas: { Key: keyView, KeyWithSecret: withKey, Error: error },
  },
  security: [{ adminToken: [] }],
  paths: {
    "/v1/keys": {
      post: {
        summary: "Create a key (the full key is in the response, once)",
        requestBody: jsonOf({
          type: "object",
          required: ["label", "plan"],
          properties: {
            label: { type: "string", maxLength: 200 },
            plan: { type: "string" },
            expires_at: { type: "string", format: "date-time" },
            metadata: { type: "object", additionalProperties: { type: "string" } },
            limits: { type: "object", description: 'Per-key limits, e.g. {"render": {"minute": 20}}.' },
            format: { type: "string", description: "Key format name; the configured default when absent." },
          },
        }),
        responses: {
          "201": { description: "Created", ...jsonOf({ $ref: "#/components/schemas/KeyWithSecret" }) },
          ...errors,
        },
      },
      get: {
        summary: "List keys, oldest first, paged",
        parameters: [
          { name: "prefix", in: "query", schema: { type: "string" } },
          {
            name: "label",
            in: "query",
            schema: { type: "string" },
            description: "Substring, case-insensitive.",
          },
          { name: "plan", in: "query", schema: { type: "string" } },
          { name: "status", in: "query", schema: { type: "string", enum: ["active", "revoked"] } },
          {
            name: "limit",
            in: "query",
            schema: { type: "integer", minimum: 1, maximum: 1000, default: 100 },
          },
          { name: "cursor", in: "query", schema: { type: "string" } },
        ],
        responses: {
          "200": {
            description: "A page",
            ...jsonOf({
              type: "object",
              properties: {
                items: { type: "array", items: { $ref: "#/components/schemas/Key" } },
                next_cursor: { type: ["string", "null"] },
              },
            }),
          },
          ...errors,
        },
      },
    },
    "/v1/keys/import": {
      post: {
        summary: "Import keys hashed elsewhere (SHA-256 of the full key)",
        requestBody: jsonOf({
          type: "object",
          properties: {
            keys: {
              type: "array",
              items: {
                type: "object",
                required: ["hash", "prefix", "label", "plan"],
                properties: {
                  hash: { type: "string", pattern: "^[0-9a-f]{64}$" },
                  prefix: { type: "string", maxLength: 10 },
                  label: { type: "string" },
                  plan: { type: "string" },
                  status: { type: "string", enum: ["active", "revoked"] },
                  created_at: { type: "string", format: "date-time" },
                  expires_at: { type: "string", format: "date-time" },
                  metadata: { type: "object", additionalProperties: { type: "string" } },
                },
              },
            },
          },
        }),
        responses: {
          "200": {
            description: "Counts; invalid entries are listed and the rest imported",
            ...jsonOf({
              type: "object",
              properties: {
                imported: { type: "integer" },
                skipped: { type: "integer", description: "Already present." },
                errors: {
                  type: "array",
                  items: {
                    type: "object",
                    properties: { index: { type: "integer" }, message: { type: "string" } },
                  },
                },
              },
            }),
          },
          ...errors,
        },
      },
    },
    "/v1/keys/{id}": {
      parameters: [idParam],
      get: {
        summary: "Show a key",
        responses: {
          "200": { description: "The key", ...jsonOf({ $ref: "#/components/schemas/Key" }) },
          ...errors,
        },
      },
      delete: {
        summary: "Delete a key for good",
        responses: { "200": { description: "Deleted" }, ...errors },
      },
    },
    "/v1/keys/{id}/revoke": {
      parameters: [idParam],
      post: {
        summary: "Revoke a key (every instance refuses it within a second)",
        responses: {
          "200": { description: "Revoked", ...jsonOf({ $ref: "#/components/schemas/Key" }) },
          ...errors,
        },
      },
    },
    "/v1/keys/{id}/rotate": {
      parameters: [idParam],
      post: {
        summary: "Issue a replacement key; the old one works for grace_seconds more",
        requestBody: jsonOf({
          type: "object",
          properties: { grace_seconds: { type: "integer", minimum: 0, maximum: 2592000, default: 0 } },
        }),
        responses: {
          "201": {
            description: "The new key (shown once) and the old one",
            ...jsonOf({ $ref: "#/components/schemas/KeyWithSecret" }),
          },
          ...errors,
        },
      },
    },
    "/v1/keys/{id}/usage": {
      parameters: [
        idParam,
        { name: "days", in: "query", schema: { type: "integer", minimum: 1, maximum: 400, default: 30 } },
      ],
      get: {
        summary: "Successful requests per UTC day",
        responses: {
          "200": {
            description: "Usage",
            ...jsonOf({
              type: "object",
              properties: {
                id: { type: "string" },
                days: {
                  type: "array",
                  items: {
                    type: "object",
                    properties: { date: { type: "string" }, requests: { type: "integer" } },
                  },
                },
              },
            }),
          },
          ...errors,
        },
      },
    },
  },
} as const;
