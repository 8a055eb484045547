import { execFileSync } from "node:child_process";

/** Integration tests start `dist/cli/main.js` as a real process: build it once per run. */
export default function setup(): void {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    stdio: "inherit",
  });
}
