// fastify + @fastify/http-proxy + @fastify/rate-limit (Redis store).
import fastifyProxy from "@fastify/http-proxy";
import fastifyRateLimit from "@fastify/rate-limit";
import Fastify from "fastify";
import { Redis } from "ioredis";
import { announce, authenticate, settings } from "./common.mjs";

const redis = new Redis(settings.redisUrl);
const app = Fastify({ logger: false });

app.addHook("onRequest", async (request, reply) => {
  const { record, refusal } = await authenticate(redis, request.headers.authorization);
  if (refusal) return reply.code(refusal[0]).send(refusal[1]);
  request.keyId = record.id;
});
await app.register(fastifyRateLimit, {
  max: settings.limitPerMinute,
  timeWindow: 60_000,
  redis,
  nameSpace: `${settings.namespace}frl:`,
  keyGenerator: (request) => request.keyId,
});
await app.register(fastifyProxy, {
  upstream: settings.upstream,
  http: { agentOptions: { keepAlive: true } },
});

await app.listen({ port: settings.port, host: "127.0.0.1" });
announce(app.server);
