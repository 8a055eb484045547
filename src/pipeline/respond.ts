/**
 * The one place keygate renders its own responses. Bodies are built once per
 * error code at config load; only messages with placeholders (the 429's
 * "Try again in N seconds") are formatted per response.
 */
import type { ServerResponse } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { Config } from "../config/schema.js";
import { ERROR_CATALOGUE, ERROR_CODES, type ErrorCode, type GatewayError } from "../errors.js";

interface RenderedError {
  readonly status: number;
  readonly contentType: string;
  /** Pre-built body, or a formatter when the message has placeholders. */
  readonly body: Buffer | ((params: Readonly<Record<string, string | number>>) => Buffer);
}

export type ErrorRenderer = (error: GatewayError) => { status: number; contentType: string; body: Buffer };

const PLACEHOLDER = /\{([a-z_]+)\}/g;

export function compileErrorRenderer(config: Config["errors"]): ErrorRenderer {
  const table = new Map<ErrorCode, RenderedError>();
  for (const code of ERROR_CODES) {
    const override = config.codes[code];
    const status = override?.status ?? ERROR_CATALOGUE[code].status;
    const message = override?.message ?? ERROR_CATALOGUE[code].message;
    const bodyFor = (text: string) =>
      Buffer.from(JSON.stringify(errorBody(config.style, code, status, text)));
    table.set(code, {
      status,
      contentType: config.style === "problem" ? "application/problem+json" : "application/json",
      body: /\{[a-z_]+\}/.test(message)
        ? (params) => bodyFor(message.replace(PLACEHOLDER, (m, name: string) => String(params[name] ?? m)))
        : bodyFor(message),
    });
  }
  return (error) => {
    const rendered = table.get(error.code) as RenderedError;
    const body = typeof rendered.body === "function" ? rendered.body(error.params ?? {}) : rendered.body;
    return { status: rendered.status, contentType: rendered.contentType, body };
  };
}

function errorBody(
  style: Config["errors"]["style"],
  code: ErrorCode,
  status: number,
  message: string,
): unknown {
  switch (style) {
    case "flat":
      return { error: message };
    case "problem":
      return { type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail: message, code };
    default:
      return { error: { code, message } };
  }
}

/** Writes `error` as the whole response. The caller guarantees nothing was sent yet. */
export function sendError(
  res: ServerResponse,
  render: ErrorRenderer,
  error: GatewayError,
  requestId: string,
  extraHeaders?: Readonly<Record<string, string | number>>,
): void {
  const { status, contentType, body } = render(error);
  res.statusCode = status;
  res.setHeader("content-type", contentType);
  res.setHeader("content-length", body.length);
  res.setHeader("cache-control", "no-store");
  if (requestId) res.setHeader("x-request-id", requestId);
  if (error.headers) for (const name in error.headers) res.setHeader(name, error.headers[name] as string);
  if (extraHeaders)
    for (const name in extraHeaders) res.setHeader(name, extraHeaders[name] as string | number);
  res.end(body);
}

/** Same as {@link sendError} on a raw socket, for refused WebSocket upgrades. */
export function sendErrorOnSocket(
  socket: Duplex,
  render: ErrorRenderer,
  error: GatewayError,
  requestId: string,
): void {
  const { status, contentType, body } = render(error);
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}`,
    `content-type: ${contentType}`,
    `content-length: ${body.length}`,
    "cache-control: no-store",
    "connection: close",
  ];
  if (requestId) lines.push(`x-request-id: ${requestId}`);
  if (error.headers) for (const name in error.headers) lines.push(`${name}: ${error.headers[name]}`);
  if (socket.writable) socket.end(Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`), body]));
  else socket.destroy();
}
