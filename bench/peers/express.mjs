// express + http-proxy-middleware + express-rate-limit + rate-limit-redis.
import { Agent } from "node:http";
import express from "express";
import { rateLimit } from "express-rate-limit";
import { createProxyMiddleware } from "http-proxy-middleware";
import { Redis } from "ioredis";
import { RedisStore } from "rate-limit-redis";
import { announce, authenticate, settings } from "./common.mjs";

const redis = new Redis(settings.redisUrl);
const app = express();
app.disable("x-powered-by");

app.use(async (req, res, next) => {
  try {
    const { record, refusal } = await authenticate(redis, req.headers.authorization);
    if (refusal) return res.status(refusal[0]).json(refusal[1]);
    req.keyId = record.id;
    next();
  } catch (error) {
    next(error);
  }
});
app.use(
  rateLimit({
    windowMs: 60_000,
    limit: settings.limitPerMinute,
    keyGenerator: (req) => req.keyId,
    standardHeaders: "draft-7",
    legacyHeaders: true,
    store: new RedisStore({
      sendCommand: (...args) => redis.call(...args),
      prefix: `${settings.namespace}erl:`,
    }),
  }),
);
app.use(
  createProxyMiddleware({
    target: settings.upstream,
    changeOrigin: true,
    agent: new Agent({ keepAlive: true, maxSockets: 256 }),
  }),
);

const server = app.listen(settings.port, "127.0.0.1", () => announce(server));
