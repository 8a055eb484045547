/**
 * vitest globalSetup: one Redis for the whole run of a project (see ./redis.ts for where it comes
 * from), handed to the tests as `inject("redisUrl")`. Tests share it, so each one keeps its keys
 * under its own `uniqueNamespace()`; a test that needs to stop Redis uses `startDedicatedRedis()`.
 */
import type { TestProject } from "vitest/node";
import { startRedis } from "./redis.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** `redis://host:port` of the Redis shared by this run. */
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await startRedis();
  if (process.env.CI || process.env.KEYGATE_TEST_REDIS_VERBOSE) {
    console.log(`[test redis] ${project.name || "tests"}: ${redis.kind} at ${redis.host}:${redis.port}`);
  }
  project.provide("redisUrl", redis.url);
  return async () => {
    await redis.stop();
  };
}
