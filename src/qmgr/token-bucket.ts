/**
 * @module qmgr/token-bucket
 * A destination's delivery-rate bucket in qmgr's terms (a RateLimit: `perMinute` and `burst`),
 * on util's token bucket: burst tokens at most, refilled at perMinute, one per delivery started.
 * Time is the caller's clock (ms); a clock that steps back refills nothing and mints nothing.
 *
 * The same arithmetic runs in SQL for the shared queue (queue/postgres/rates.ts), on the
 * database's clock, so both backends mean the same thing by a rate.
 */
import type { RateLimit } from '../config/index.js';
import { take as takeTokens, tokensAt } from '../util/index.js';
import type { BucketRate, BucketState } from '../util/index.js';

export type { BucketState };

export type TakeResult =
  | { readonly taken: true; readonly state: BucketState }
  | { readonly taken: false; readonly state: BucketState; /** ms until one token is there. */ readonly waitMs: number };

/** ms per token. */
export function interval(limit: RateLimit): number {
  return 60_000 / limit.perMinute;
}

function bucketRate(limit: RateLimit): BucketRate {
  return { capacity: limit.burst, windowMs: limit.burst * interval(limit) };
}

/** The bucket at `now`: refilled for the time passed, capped at burst. */
export function refill(state: BucketState | undefined, limit: RateLimit, now: number): BucketState {
  const at = Math.max(now, state?.at ?? now);
  return { tokens: tokensAt(state, bucketRate(limit), at), at };
}

/** Take one token at `now` if there is one; otherwise say how long until there is. */
export function take(state: BucketState | undefined, limit: RateLimit, now: number): TakeResult {
  const r = takeTokens(state, bucketRate(limit), Math.max(now, state?.at ?? now));
  return r.allowed ? { taken: true, state: r.state } : { taken: false, state: r.state, waitMs: Math.max(1, r.retryAfterMs) };
}
