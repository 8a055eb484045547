/**
 * `keygate serve`: load the configuration, start the gateway, and wire the
 * process signals (SIGTERM/SIGINT drain and exit 0, SIGHUP reloads).
 */
import { loadConfigFile } from "../config/load.js";
import { ConfigError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import { createGateway } from "../server/create.js";

export async function serve(configFile: string): Promise<void> {
  const config = await loadConfigFile(configFile);
  const { gateway, logger, metrics } = await createGateway(config);
  await gateway.listen();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
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
  process.on("SIGHUP", () => {
    loadConfigFile(configFile).then(
      (next) => {
        gateway.reload(next);
        metrics.configReloads.inc({ result: "ok" });
        logger.info({ file: configFile }, "configuration reloaded");
      },
      (error) => {
        metrics.configReloads.inc({ result: "rejected" });
        const problems = error instanceof ConfigError ? error.problems : [{ message: String(error) }];
        logger.error({ file: configFile, problems }, "configuration rejected; keeping the running one");
      },
    );
  });
}

function exitAfterFlush(logger: Logger, code: number): void {
  logger.flush(() => process.exit(code));
}
