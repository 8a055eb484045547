/**
 * Window arithmetic shared, line for line, by the in-memory limiter and the
 * Redis Lua script (see redis-script.ts), so both stores decide alike.
 *
 * Fixed windows are aligned to the Unix epoch: a minute window runs from
 * hh:mm:00.000 to hh:mm:59.999. The sliding option estimates the count over
 * the last full window as `previous × (unelapsed fraction) + current`
 * (Cloudflare's approximation): exact when traffic in the previous window was
 * uniform, and never admitting more than the limit within one fixed window.
 */
export const WINDOW_MS = {
  second: 1_000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  /** 30 days, epoch-aligned: not a calendar month. */
  month: 2_592_000_000,
} as const;

export type WindowName = keyof typeof WINDOW_MS;
export const WINDOW_NAMES = Object.keys(WINDOW_MS) as WindowName[];

/** Counter state of one window: start of the current window, its count, the previous window's count. */
export interface CounterState {
  start: number;
  count: number;
  previous: number;
}

/** Rolls `state` forward to the window containing `now`. */
export function roll(state: CounterState | undefined, now: number, windowMs: number): CounterState {
  const start = now - (now % windowMs);
  if (!state) return { start, count: 0, previous: 0 };
  if (state.start === start) return state;
  return { start, count: 0, previous: state.start === start - windowMs ? state.count : 0 };
}

/** Requests counted against the limit at `now`. */
export function used(state: CounterState, now: number, windowMs: number, sliding: boolean): number {
  if (!sliding) return state.count;
  const unelapsed = windowMs - (now - state.start);
  return Math.floor((state.previous * unelapsed) / windowMs) + state.count;
}

/** When a request of `cost` could pass, for a window that refuses it now. */
export function retryAt(
  state: CounterState,
  windowMs: number,
  sliding: boolean,
  limit: number,
  cost: number,
): number {
  const end = state.start + windowMs;
  if (!sliding || state.previous === 0 || state.count + cost > limit) return end;
  // Wait until previous × unelapsed / window ≤ limit − count − cost.
  const room = limit - state.count - cost;
  const unelapsed = Math.floor((room * windowMs) / state.previous);
  return end - unelapsed;
}
