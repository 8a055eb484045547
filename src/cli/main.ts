#!/usr/bin/env node
/**
 * The `keygate` command. Each subcommand lives in its own module; this file
 * only parses the command line and turns failures into one clear line and a
 * non-zero exit status.
 */
import { parseArgs } from "node:util";
import { loadConfigFile } from "../config/load.js";
import { configJsonSchema } from "../config/schema.js";
import { ConfigError, formatProblem } from "../errors.js";
import { CliError, KEYS_USAGE, keysCommand } from "./keys.js";

const USAGE = `Usage:
  keygate serve [--config <file>]       run the gateway (default config/gateway.yaml)
  keygate config check <file>           validate a configuration, listing every problem
  keygate config schema                 print the configuration's JSON Schema
  keygate keys <command>                manage API keys through the admin API (keygate keys help)
  keygate demo                          run keygate with an echo upstream and a fresh key, print a curl line
`;

export class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve": {
      const { values } = parseArgs({ args: rest, options: { config: { type: "string", short: "c" } } });
      // The gateway is loaded only by the commands that run it, so `keys` and `config` start fast.
      const { serve } = await import("./serve.js");
      await serve(values.config ?? process.env.KEYGATE_CONFIG ?? "config/gateway.yaml");
      return -1; // keeps running; the signal handlers decide the exit status
    }
    case "config":
      return configCommand(rest);
    case "keys":
      if (rest[0] === "help" || rest[0] === "--help") {
        process.stdout.write(KEYS_USAGE);
        return 0;
      }
      return keysCommand(rest);
    case "demo": {
      const { demo } = await import("./demo.js");
      await demo();
      return -1;
    }
    case "help":
    case "--help":
    case "-h":
    case undefined:
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

async function configCommand(args: string[]): Promise<number> {
  const [sub, file] = args;
  if (sub === "schema") {
    process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    return 0;
  }
  if (sub !== "check" || !file) throw new UsageError("expected: keygate config check <file>");
  try {
    await loadConfigFile(file);
    process.stdout.write(`${file}: OK\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(
      `${file}: ${error.problems.length} problem(s)\n${error.problems.map(formatProblem).join("\n")}\n`,
    );
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof CliError) {
      process.stderr.write(`keygate: ${error.message}\n`);
      process.exitCode = 1;
    } else if (error instanceof UsageError) {
      process.stderr.write(`keygate: ${error.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (error instanceof ConfigError) {
      process.stderr.write(`keygate: ${error.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`keygate: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
