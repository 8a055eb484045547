/**
 * Logger factory. Access lines are built field by field from the request
 * context and never include raw headers; the pino `redact` list is a second
 * guard for anything that logs a request object by mistake.
 */
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

/** Headers that carry credentials and are redacted whatever the configuration says. */
export const ALWAYS_REDACTED_HEADERS = [
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
] as const;

export interface LoggerOptions {
  level: string;
  /** Extra credential header names (lower case). */
  redactHeaders?: readonly string[];
  /** Where lines go; stdout (asynchronously buffered) by default. */
  destination?: DestinationStream;
}

/** Bytes gathered before a write to stdout: one write per request would cost a syscall each. */
const STDOUT_BATCH_BYTES = 4096;
/** A quiet gateway's lines still appear within this delay. */
const STDOUT_FLUSH_MS = 250;

function stdoutDestination(): DestinationStream {
  const destination = pino.destination({ dest: 1, sync: false, minLength: STDOUT_BATCH_BYTES });
  const timer = setInterval(() => {
    try {
      destination.flush();
    } catch {
      clearInterval(timer); // stdout is gone (destroyed): nothing left to flush
    }
  }, STDOUT_FLUSH_MS);
  timer.unref();
  return destination;
}

export function createLogger(options: LoggerOptions): Logger {
  const headers = [...ALWAYS_REDACTED_HEADERS, ...(options.redactHeaders ?? [])];
  const paths = headers.flatMap((h) => [`req.headers["${h}"]`, `headers["${h}"]`, `res.headers["${h}"]`]);
  return pino(
    {
      level: options.level,
      base: { service: "keygate" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths, censor: "[REDACTED]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? stdoutDestination(),
  );
}
