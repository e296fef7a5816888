/**
 * @module util/token-bucket
 * Token buckets, pure and keyed: "at most `capacity` events at once, refilled at `capacity` per
 * `windowMs`". Who uses it: smtpd/limits (messages and recipients per minute per client IP or
 * per user). Time comes in as a `now()` function; nothing here reads a clock or sets a timer.
 *
 * The table has bounded memory whatever the traffic, because its keys come from the network (an
 * attacker who sprays source addresses chooses how many keys there are):
 *   - an idle key, whose bucket has refilled to full, is indistinguishable from an absent one and
 *     is dropped; every take() moves a sweeping cursor two keys on and drops them if idle, so a
 *     table whose clients have gone quiet shrinks without a sweeper timer;
 *   - at `maxKeys` a key not used since the cursor last passed it is dropped even if not idle
 *     (the CLOCK approximation of least-recently-used). That forgives one client its debt (fails
 *     open for it) rather than refusing everyone or growing without end, and a client that keeps
 *     sending, the one a limit is for, is the last to be forgotten.
 * Every take is O(1) amortised: keys are never moved within the Map (a delete-and-reinsert per
 * take would leave V8 a trail of deleted slots that each fresh iteration has to walk).
 *
 * Tokens are fractional (a refill of 60 per minute adds one per second, continuously); a take is
 * all-or-nothing, so a refused request costs nothing and `retryAfterMs` says when it would pass.
 */

const TOKEN_EPSILON = 1e-6;

export interface BucketRate {
  /** The burst: tokens a full bucket holds, and the events allowed per window. At least 1. */
  readonly capacity: number;
  /** Time to refill an empty bucket to full, in ms. At least 1. */
  readonly windowMs: number;
}

export interface BucketState {
  readonly tokens: number;
  /** When `tokens` was computed (the clock's ms). */
  readonly at: number;
}

export type TakeResult =
  | { readonly allowed: true; readonly state: BucketState }
  | { readonly allowed: false; readonly state: BucketState; readonly retryAfterMs: number };

/** Tokens in the bucket at `now`: what it had plus the refill since, never above capacity. */
export function tokensAt(state: BucketState | undefined, rate: BucketRate, now: number): number {
  if (state === undefined) return rate.capacity;
  // A clock that steps back must not mint tokens nor take them away.
  const elapsed = Math.max(0, now - state.at);
  return Math.min(rate.capacity, state.tokens + (elapsed * rate.capacity) / rate.windowMs);
}

/** Take `n` tokens if the bucket has them; otherwise take none and say how long until it would. */
export function take(state: BucketState | undefined, rate: BucketRate, now: number, n = 1): TakeResult {
  const tokens = tokensAt(state, rate, now);
  // A millionth of a token of slack: the refill is float arithmetic, and a client told to come
  // back in retryAfterMs must pass then (4 per 9280 ms: 0.0043 + 4629 ms of refill = 1.9999999…).
  if (tokens + TOKEN_EPSILON >= n) return { allowed: true, state: { tokens: Math.max(0, tokens - n), at: now } };
  // The 1e-9 keeps float noise (0.01 * 100 = 1.0000000000000009) from adding a millisecond.
  const retryAfterMs = Math.ceil(((n - tokens) * rate.windowMs) / rate.capacity - 1e-9);
  return { allowed: false, state: { tokens, at: now }, retryAfterMs };
}

export interface BucketTableOptions {
  /** Keys kept at most; beyond it the least recently used is dropped. At least 1. */
  readonly maxKeys: number;
  readonly now: () => number;
}

/** Keys the sweeping cursor looks at on each take. */
const IDLE_PROBES = 2;

interface Entry {
  state: BucketState;
  /** Used since the cursor last passed: spared once by the eviction at maxKeys (CLOCK). */
  used: boolean;
}

/** One bucket per key, all at the same rate, in bounded memory (see the module header). */
export class BucketTable {
  private readonly buckets = new Map<string, Entry>();
  /** Map iterators stay valid across inserts and deletes; at the end it starts a new lap. */
  private cursor: Iterator<[string, Entry]> = this.buckets.entries();
  private rate: BucketRate;
  private maxKeys: number;

  constructor(rate: BucketRate, private readonly options: BucketTableOptions) {
    this.rate = checkRate(rate);
    this.maxKeys = checkMaxKeys(options.maxKeys);
  }

  /** Change the rate or the key bound (SIGHUP); the buckets keep what they hold. */
  reconfigure(rate: BucketRate, maxKeys: number): void {
    this.rate = checkRate(rate);
    this.maxKeys = checkMaxKeys(maxKeys);
    while (this.buckets.size > this.maxKeys) this.evictOne(this.options.now());
  }

  take(key: string, n = 1): TakeResult {
    const now = this.options.now();
    this.dropIdle(now);
    const entry = this.buckets.get(key);
    const result = take(entry?.state, this.rate, now, n);
    if (entry !== undefined) {
      entry.state = result.state;
      entry.used = true;
    } else if (result.allowed) {
      // (A refused take of a key we had no state for changes nothing worth remembering.)
      if (this.buckets.size >= this.maxKeys) this.evictOne(now);
      this.buckets.set(key, { state: result.state, used: true });
    }
    return result;
  }

  /** Tokens `key` has now (capacity for an unknown key); does not count as a use. */
  peek(key: string): number {
    return tokensAt(this.buckets.get(key)?.state, this.rate, this.options.now());
  }

  get size(): number {
    return this.buckets.size;
  }

  private idle(entry: Entry, now: number): boolean {
    return tokensAt(entry.state, this.rate, now) >= this.rate.capacity;
  }

  private advance(): [string, Entry] | undefined {
    let next = this.cursor.next();
    if (next.done === true) {
      this.cursor = this.buckets.entries();
      next = this.cursor.next();
    }
    return next.done === true ? undefined : next.value;
  }

  private dropIdle(now: number): void {
    for (let i = 0; i < IDLE_PROBES; i++) {
      const at = this.advance();
      if (at !== undefined && this.idle(at[1], now)) this.buckets.delete(at[0]);
    }
  }

  /** CLOCK: spare (and unmark) the keys used since the last lap; drop the first idle or unused one. */
  private evictOne(now: number): void {
    // Two laps at most: after one, no key is marked used any more.
    for (let i = 0, limit = 2 * this.buckets.size + 1; i < limit; i++) {
      const at = this.advance();
      if (at === undefined) return;
      const [key, entry] = at;
      if (!entry.used || this.idle(entry, now)) {
        this.buckets.delete(key);
        return;
      }
      entry.used = false;
    }
  }
}

function checkRate(rate: BucketRate): BucketRate {
  if (!(rate.capacity >= 1) || !(rate.windowMs >= 1)) {
    throw new RangeError(`token bucket: capacity and window must be at least 1 (got ${rate.capacity}, ${rate.windowMs}ms)`);
  }
  return rate;
}

function checkMaxKeys(maxKeys: number): number {
  if (!(maxKeys >= 1)) throw new RangeError(`token bucket table: maxKeys must be at least 1 (got ${maxKeys})`);
  return maxKeys;
}
