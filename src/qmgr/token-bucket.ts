/**
 * @module qmgr/token-bucket
 * A token bucket as pure arithmetic on (tokens, at): the bucket holds up to `burst` tokens,
 * refills at `perMinute`, and each delivery started takes one. Time is whatever the caller's
 * clock says (ms); nothing here reads a clock or sets a timer, so tests drive it exactly.
 *
 * The same arithmetic runs in SQL for the shared queue (queue/postgres/rates.ts), on the
 * database's clock, so both backends mean the same thing by a rate.
 *
 * (limits-in builds util/token-bucket.ts for inbound limits in parallel; when both are merged
 * this one can become a thin use of it.)
 */
import type { RateLimit } from '../config/index.js';

export interface BucketState {
  /** Tokens at `at` (may be fractional; below 1 means none to take). */
  readonly tokens: number;
  readonly at: number;
}

export type TakeResult =
  | { readonly taken: true; readonly state: BucketState }
  | { readonly taken: false; readonly state: BucketState; /** ms until one token is there. */ readonly waitMs: number };

/** ms per token. */
export function interval(limit: RateLimit): number {
  return 60_000 / limit.perMinute;
}

/** The bucket at `now`: refilled for the time passed (a clock that went back refills nothing), capped at burst. */
export function refill(state: BucketState | undefined, limit: RateLimit, now: number): BucketState {
  if (state === undefined) return { tokens: limit.burst, at: now };
  const elapsed = Math.max(0, now - state.at);
  return { tokens: Math.min(limit.burst, state.tokens + elapsed / interval(limit)), at: Math.max(now, state.at) };
}

/** Take one token at `now` if there is one; otherwise say how long until there is. */
export function take(state: BucketState | undefined, limit: RateLimit, now: number): TakeResult {
  const full = refill(state, limit, now);
  if (full.tokens >= 1) return { taken: true, state: { tokens: full.tokens - 1, at: full.at } };
  // The epsilon keeps float noise (0.01 * 100 = 1.0000000000000009) from adding a millisecond.
  return { taken: false, state: full, waitMs: Math.max(1, Math.ceil((1 - full.tokens) * interval(limit) - 1e-9)) };
}
