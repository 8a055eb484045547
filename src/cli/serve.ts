/**
 * `keygate serve`: load the configuration, start the gateway, and wire the
 * process signals: SIGTERM/SIGINT drain and exit 0, SIGHUP (and, with
 * `reload.watch`, a change of the file) reloads the configuration.
 */
import { watch } from "node:fs";
import { basename, dirname } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { loadConfigFile } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import { createGateway } from "../server/create.js";

/** Sections a running process cannot change: they take effect at the next start. */
const RESTART_ONLY: readonly (keyof Config)[] = [
  "listeners",
  "server",
  "store",
  "admin",
  "logging",
  "reload",
];

export async function serve(configFile: string): Promise<void> {
  const config = await loadConfigFile(configFile);
  const { gateway, logger, metrics } = await createGateway(config);
  await gateway.listen();
  logger.flush(); // the startup line (with the bound ports) must not wait in the 4 KB stdout buffer

  let reloading = Promise.resolve();
  const reload = (trigger: string) => {
    reloading = reloading.then(async () => {
      try {
        const next = await loadConfigFile(configFile);
        const pending = RESTART_ONLY.filter(
          (section) => !isDeepStrictEqual(next[section], gateway.config[section]),
        );
        gateway.reload(next);
        metrics.configReloads.inc({ result: "ok" });
        logger.info({ file: configFile, trigger }, "configuration reloaded");
        if (pending.length > 0)
          logger.warn({ sections: pending }, "these sections change only at the next restart");
      } catch (error) {
        metrics.configReloads.inc({ result: "rejected" });
        const problems = error instanceof ConfigError ? error.problems : [{ message: String(error) }];
        logger.error(
          { file: configFile, trigger, problems },
          "configuration rejected; keeping the running one",
        );
      }
    });
  };
  process.on("SIGHUP", () => reload("SIGHUP"));
  const watcher = config.reload.watch ? watchFile(configFile, () => reload("file change")) : undefined;

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    watcher?.close();
    logger.info({ signal }, "shutdown requested");
    gateway.shutdown().then(
      () => exitAfterFlush(logger, 0),
      (error) => {
        logger.error({ err: error }, "shutdown failed");
        exitAfterFlush(logger, 1);
      },
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

/**
 * Watches the directory rather than the file: editors and ConfigMap updates
 * replace the file by rename, which a watch on the old inode would miss.
 * Bursts of events become one call.
 */
function watchFile(file: string, onChange: () => void): { close(): void } {
  const name = basename(file);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(dirname(file), (_event, changed) => {
    if (changed !== null && changed !== name && !changed.startsWith("..")) return;
    clearTimeout(timer);
    timer = setTimeout(onChange, 200);
  });
  return { close: () => watcher.close() };
}

function exitAfterFlush(logger: Logger, code: number): void {
  logger.flush(() => process.exit(code));
}
