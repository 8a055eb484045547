/**
 * The Redis limiter: one Lua script checks and counts every window of a
 * request atomically, with the time taken from Redis (TIME), so any number
 * of instances share exact counters and no instance's clock matters.
 * ioredis calls it by SHA (EVALSHA) and re-sends the source transparently
 * when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH).
 *
 * Requests that reach the limiter in the same turn of the event loop go to
 * Redis together, in one script call that decides them one after the other.
 * Under load a busy gateway decides dozens of requests per call, which saves
 * each of them a socket write and a command of its own; a request alone waits
 * only until the loop's check phase (setImmediate): later in the same turn
 * when it arrived with I/O, one turn later when it arrived in a check phase.
 *
 * Each counter is a HASH `{s: window start, c: count, p: previous count}`
 * under a key carrying a `{subject}` hash tag, so one subject's keys share a
 * Cluster slot. The arithmetic mirrors window-math.ts.
 */
import type { Redis } from "ioredis";
import type { CircuitBreaker } from "../store/breaker.js";
import { StoreUnavailableError } from "../store/key-store.js";
import type { Decision, LimitStore, WindowCheck, WindowResult } from "./limit-store.js";

// KEYS: the counters of every request of the batch, in order, one per window.
// ARGV[1]: numbers separated by spaces: per request, its window count and its cost, then per
// window: limit, window ms, sliding (1/0), shadow (1/0). One argument rather than six per
// request: ioredis copies, converts and measures every argument of a call one by one.
// Returns: now, then per request: allowed, then per window: remaining, reset at, retry at, exceeded.
const CONSUME = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spec = {}
for word in string.gmatch(ARGV[1], '%S+') do spec[#spec + 1] = tonumber(word) end
local out = { now }
local k, a = 0, 1
while a <= #spec do
  local n, cost = spec[a], spec[a + 1]
  a = a + 2
  local st = {}
  local allowed = 1
  for i = 1, n do
    local base = a + (i - 1) * 4
    local limit, win = spec[base], spec[base + 1]
    local sliding, shadow = spec[base + 2] == 1, spec[base + 3] == 1
    local start = now - (now % win)
    local h = redis.call('HMGET', KEYS[k + i], 's', 'c', 'p')
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
  out[#out + 1] = allowed
  for i = 1, n do
    local w = st[i]
    local counts = allowed == 1 and not w.exceeded
    local usedAfter = w.used
    if counts then
      redis.call('HSET', KEYS[k + i], 's', w.s, 'c', w.c + cost, 'p', w.p)
      redis.call('PEXPIREAT', KEYS[k + i], w.s + 2 * w.win)
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
  k = k + n
  a = a + 4 * n
end
return out`;

/** At most this many requests, or counters, per script call, so one call never holds Redis for long. */
const MAX_BATCH_REQUESTS = 64;
const MAX_BATCH_KEYS = 256;

type LimiterClient = Redis & { keygateConsume(...args: (string | number)[]): Promise<number[]> };

interface Waiting {
  readonly checks: readonly WindowCheck[];
  readonly cost: number;
  resolve(decision: Decision): void;
  reject(error: unknown): void;
}

export class RedisLimitStore implements LimitStore {
  private readonly client: LimiterClient;
  /** Requests of this turn of the event loop, sent together when it ends (or when full). */
  private waiting: Waiting[] = [];
  /** The counters the waiting requests touch. */
  private waitingKeys = 0;
  private flushScheduled = false;

  constructor(
    client: Redis,
    private readonly breaker: CircuitBreaker,
  ) {
    client.defineCommand("keygateConsume", { lua: CONSUME });
    this.client = client as LimiterClient;
  }

  consume(checks: readonly WindowCheck[], cost: number): Promise<Decision> {
    return new Promise<Decision>((resolve, reject) => {
      // Counters beyond the cap go in the next call, not on top of this one.
      if (this.waitingKeys + checks.length > MAX_BATCH_KEYS) this.flush();
      this.waiting.push({ checks, cost, resolve, reject });
      this.waitingKeys += checks.length;
      if (this.waiting.length >= MAX_BATCH_REQUESTS || this.waitingKeys >= MAX_BATCH_KEYS) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.scheduledFlush);
      }
    });
  }

  private readonly scheduledFlush = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  private flush(): void {
    const batch = this.waiting;
    if (batch.length === 0) return;
    this.waiting = [];
    this.waitingKeys = 0;
    const keys: string[] = [];
    let spec = "";
    for (const { checks, cost } of batch) {
      spec += ` ${checks.length} ${cost}`;
      for (const check of checks) {
        keys.push(check.key);
        spec += ` ${check.limit} ${check.windowMs} ${check.sliding ? 1 : 0} ${check.shadow ? 1 : 0}`;
      }
    }
    this.breaker
      .run(() => this.call(keys, spec))
      .then((reply) => settle(batch, reply))
      .catch((error: unknown) => {
        for (const request of batch) request.reject(error);
      });
  }

  private async call(keys: string[], spec: string): Promise<number[]> {
    try {
      return await this.client.keygateConsume(keys.length, ...keys, spec);
    } catch (error) {
      throw new StoreUnavailableError(`redis limiter: ${(error as Error).message}`, { cause: error });
    }
  }
}

/** Hands each request of a batch its part of the script's reply (checked whole first). */
function settle(batch: readonly Waiting[], reply: number[]): void {
  let expected = 1;
  for (const request of batch) expected += 1 + 4 * request.checks.length;
  if (!Array.isArray(reply) || reply.length !== expected)
    throw new StoreUnavailableError(`redis limiter: unexpected reply to a batch of ${batch.length}`);
  const now = reply[0] as number;
  let at = 1;
  for (const request of batch) {
    const allowed = reply[at++] === 1;
    const windows: WindowResult[] = [];
    for (let i = 0; i < request.checks.length; i++, at += 4) {
      windows.push({
        remaining: reply[at] as number,
        resetAt: reply[at + 1] as number,
        retryAt: reply[at + 2] as number,
        exceeded: reply[at + 3] === 1,
      });
    }
    request.resolve({ allowed, now, windows });
  }
}
