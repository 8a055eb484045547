/**
 * The Redis limiter: one Lua script checks and counts every window of a
 * request atomically, with the time taken from Redis (TIME), so any number
 * of instances share exact counters and no instance's clock matters.
 * ioredis calls it by SHA (EVALSHA) and re-sends the source transparently
 * when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH).
 *
 * Each counter is a HASH `{s: window start, c: count, p: previous count}`
 * under a key carrying a `{subject}` hash tag, so one request's keys share a
 * Cluster slot. The arithmetic mirrors window-math.ts.
 */
import type { Redis } from "ioredis";
import type { CircuitBreaker } from "../store/breaker.js";
import { StoreUnavailableError } from "../store/key-store.js";
import type { Decision, LimitStore, WindowCheck, WindowResult } from "./limit-store.js";

// KEYS: one counter per window. ARGV: cost, then per window: limit, window ms, sliding (1/0), shadow (1/0).
// Returns: allowed, now, then per window: remaining, reset at, retry at, exceeded.
const CONSUME = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local n = #KEYS
local st = {}
local allowed = 1
for i = 1, n do
  local base = 2 + (i - 1) * 4
  local limit, win = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
  local sliding, shadow = ARGV[base + 2] == '1', ARGV[base + 3] == '1'
  local start = now - (now % win)
  local h = redis.call('HMGET', KEYS[i], 's', 'c', 'p')
  local s, c, p = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
  if s == nil then s, c, p = start, 0, 0
  elseif s ~= start then
    if s == start - win then p = c else p = 0 end
    s, c = start, 0
  end
  local usedNow = c
  if sliding then usedNow = math.floor(p * (win - (now - s)) / win) + c end
  local exceeded = usedNow + cost > limit
  if exceeded and not shadow then allowed = 0 end
  st[i] = { limit = limit, win = win, sliding = sliding, s = s, c = c, p = p, used = usedNow, exceeded = exceeded }
end
local out = { allowed, now }
for i = 1, n do
  local w = st[i]
  local counts = allowed == 1 and not w.exceeded
  local usedAfter = w.used
  if counts then
    redis.call('HSET', KEYS[i], 's', w.s, 'c', w.c + cost, 'p', w.p)
    redis.call('PEXPIREAT', KEYS[i], w.s + 2 * w.win)
    usedAfter = w.used + cost
  end
  local retry = now
  if w.exceeded then
    retry = w.s + w.win
    if w.sliding and w.p > 0 and w.c + cost <= w.limit then
      retry = retry - math.floor((w.limit - w.c - cost) * w.win / w.p)
    end
  end
  out[#out + 1] = math.max(0, w.limit - usedAfter)
  out[#out + 1] = w.s + w.win
  out[#out + 1] = retry
  out[#out + 1] = w.exceeded and 1 or 0
end
return out`;

type LimiterClient = Redis & { keygateConsume(...args: (string | number)[]): Promise<number[]> };

export class RedisLimitStore implements LimitStore {
  private readonly client: LimiterClient;

  constructor(
    client: Redis,
    private readonly breaker: CircuitBreaker,
  ) {
    client.defineCommand("keygateConsume", { lua: CONSUME });
    this.client = client as LimiterClient;
  }

  consume(checks: readonly WindowCheck[], cost: number): Promise<Decision> {
    const args: (string | number)[] = [checks.length];
    for (const check of checks) args.push(check.key);
    args.push(cost);
    for (const check of checks)
      args.push(check.limit, check.windowMs, check.sliding ? 1 : 0, check.shadow ? 1 : 0);
    return this.breaker.run(async () => {
      let reply: number[];
      try {
        reply = await this.client.keygateConsume(...args);
      } catch (error) {
        throw new StoreUnavailableError(`redis limiter: ${(error as Error).message}`, { cause: error });
      }
      const windows: WindowResult[] = [];
      for (let i = 2; i < reply.length; i += 4) {
        windows.push({
          remaining: reply[i] as number,
          resetAt: reply[i + 1] as number,
          retryAt: reply[i + 2] as number,
          exceeded: reply[i + 3] === 1,
        });
      }
      return { allowed: reply[0] === 1, now: reply[1] as number, windows };
    });
  }
}
