/**
 * @module qmgr/rates
 * Per-destination outbound rate limits: at most `perMinute` deliveries start to one destination
 * per minute, `burst` of them at once after a quiet spell (a token bucket, qmgr/token-bucket).
 *
 * Two parts:
 *   - DestinationRates, the port where the buckets live: LocalDestinationRates (this process;
 *     the embedded store has one node, so local is cluster-wide) or the shared queue's
 *     implementation (queue/postgres/rates.ts: one row per destination, one statement per take,
 *     on the database's clock), which main.ts passes in.
 *   - RateGate, what the runner uses: a FIFO of this node's groups waiting for a token of each
 *     destination, where only the head asks the port (so a backlog costs one query per token, not
 *     one per waiter per poll), sleeping until the port says a token is due. It also estimates
 *     how long a newly claimed group would wait (from the last bucket state it saw and the
 *     waiters ahead), so the runner can give a claim back instead of holding its lease idle, and
 *     hands out come-back times spaced one token apart, so a given-back backlog returns at the
 *     rate rather than all at once (no claim/give-back churn per poll).
 *
 * Failure: a port that throws (the database is away) counts as "no token yet": the gate retries
 * after ERROR_RETRY_MS and never lets a delivery start without a token (fail closed).
 * close() resolves every waiter with false (the runner then does not start the group).
 */
import type { RateLimit } from '../config/index.js';
import type { Clock, Sleep } from '../util/index.js';
import { sleepOn } from '../util/index.js';
import { interval, refill, take } from './token-bucket.js';
import type { BucketState } from './token-bucket.js';

/** One take's answer: taken or not, the tokens left (as the bucket's owner saw them), and the wait for the next. */
export interface RateTake {
  readonly taken: boolean;
  /** Tokens in the bucket after this take (fractional; < 1: none left). */
  readonly tokens: number;
  /** When not taken: ms until a token is due (0 when taken). */
  readonly waitMs: number;
}

/** qmgr's port for rate buckets; a shared backend makes them cluster-wide. */
export interface DestinationRates {
  /** Take one token of `destination`'s bucket now, if there is one. Never waits. */
  take(destination: string, limit: RateLimit): Promise<RateTake>;
  /** The tokens in the bucket now, without taking any (explain). */
  peek(destination: string, limit: RateLimit): Promise<number>;
}

/** Buckets in this process, on the injected clock. */
export class LocalDestinationRates implements DestinationRates {
  /** Each bucket with the limit it was last taken under (the prune needs each one's own). */
  private readonly buckets = new Map<string, { state: BucketState; limit: RateLimit }>();
  private pruneAt = PRUNE_AT;

  constructor(private readonly clock: Pick<Clock, 'now'>) {}

  take(destination: string, limit: RateLimit): Promise<RateTake> {
    const now = this.clock.now();
    const r = take(this.buckets.get(destination)?.state, limit, now);
    this.buckets.set(destination, { state: r.state, limit });
    if (this.buckets.size > this.pruneAt) this.prune(now);
    return Promise.resolve(r.taken ? { taken: true, tokens: r.state.tokens, waitMs: 0 } : { taken: false, tokens: r.state.tokens, waitMs: r.waitMs });
  }

  peek(destination: string, limit: RateLimit): Promise<number> {
    const state = this.buckets.get(destination)?.state;
    if (state === undefined) return Promise.resolve(limit.burst);
    return Promise.resolve(refill(state, limit, this.clock.now()).tokens);
  }

  /** A bucket that has refilled is the same as no bucket: forget it (the map stays the active set). */
  private prune(now: number): void {
    for (const [d, { state, limit }] of this.buckets) if (refill(state, limit, now).tokens >= limit.burst) this.buckets.delete(d);
    this.pruneAt = nextPruneAt(this.buckets.size);
  }
}

const PRUNE_AT = 1_000;

/**
 * The size at which to prune next: twice what a prune kept, so a map of many live entries is
 * walked once per doubling, not on every insert (amortised O(1) per insert).
 */
function nextPruneAt(kept: number): number {
  return Math.max(PRUNE_AT, 2 * kept);
}
/** The furthest ahead a given-back claim is scheduled (see reserve). */
export const COME_BACK_MAX_MS = 5 * 60_000;
/** How long the gate waits before asking a failing port again. */
export const ERROR_RETRY_MS = 1_000;

interface Waiter {
  /** Read at each try, so a SIGHUP that changes the rate applies to groups already waiting; undefined: no limit now. */
  readonly limit: () => RateLimit | undefined;
  readonly resolve: (taken: boolean) => void;
  counted: boolean;
}

interface Lane {
  readonly waiters: Waiter[];
  /** The bucket as the last take saw it (tokens after it, and when). */
  seen: { tokens: number; at: number } | undefined;
  /** The come-back time handed out last, plus one token's interval. */
  horizon: number;
  pumping: boolean;
  sleep: Sleep | undefined;
}

export class RateGate {
  private readonly lanes = new Map<string, Lane>();
  private lanesPruneAt = PRUNE_AT;
  private closed = false;

  constructor(
    private readonly port: DestinationRates,
    private readonly clock: Clock,
    /** A group could not start at once for lack of a token (metrics). */
    private readonly onWait: (destination: string) => void = () => undefined,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /**
   * ms until a group of `destination` claimed now could start, by what this node last saw (0: at
   * once). `ahead`: groups of it queued before the gate (waiting for the concurrency window).
   */
  estimate(destination: string, limit: RateLimit, ahead = 0): number {
    const lane = this.lanes.get(destination);
    const per = interval(limit);
    const now = this.clock.now();
    const tokens = lane?.seen === undefined ? limit.burst : refill(lane.seen, limit, now).tokens;
    return Math.max(0, Math.ceil(((lane?.waiters.length ?? 0) + ahead + 1 - tokens) * per));
  }

  /**
   * A group given back instead of waiting: when it should be due again. Successive calls are
   * spaced one token apart behind the estimate, so a backlog comes back at the rate; never
   * further than COME_BACK_MAX_MS ahead, so a rate raised by a reload (or a mistaken tiny rate
   * put right) does not leave mail parked for hours: past that horizon a deep backlog is claimed
   * and given back once per COME_BACK_MAX_MS (the churn that bound costs).
   */
  reserve(destination: string, limit: RateLimit, ahead = 0): number {
    const lane = this.lane(destination);
    const now = this.clock.now();
    const at = Math.max(lane.horizon, now + this.estimate(destination, limit, ahead));
    this.onWait(destination);
    if (at > now + COME_BACK_MAX_MS) return now + COME_BACK_MAX_MS;
    lane.horizon = at + interval(limit);
    return at;
  }

  /** What reserve() would return now, without reserving anything (choosing which group to reserve for). */
  slotAt(destination: string, limit: RateLimit, ahead = 0): number {
    const now = this.clock.now();
    return Math.min(Math.max(this.lanes.get(destination)?.horizon ?? 0, now + this.estimate(destination, limit, ahead)), now + COME_BACK_MAX_MS);
  }

  /** The rates may have changed (SIGHUP): every waiting head asks again at once, under its new limit. */
  nudge(): void {
    for (const lane of this.lanes.values()) {
      lane.horizon = 0;
      lane.sleep?.cancel();
    }
  }

  /** Resolves true once a token of `destination` is ours (FIFO among this node's waiters), false if the gate closed. */
  acquire(destination: string, limit: () => RateLimit | undefined): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (limit() === undefined) return Promise.resolve(true);
    const lane = this.lane(destination);
    return new Promise<boolean>((resolve) => {
      lane.waiters.push({ limit, resolve, counted: false });
      void this.pump(destination, lane);
    });
  }

  /** This node's groups waiting for a token of `destination`. */
  waitingFor(destination: string): number {
    return this.lanes.get(destination)?.waiters.length ?? 0;
  }

  /** Wake every waiter with false; later acquires resolve false at once. */
  close(): void {
    this.closed = true;
    for (const lane of this.lanes.values()) {
      for (const w of lane.waiters.splice(0)) w.resolve(false);
      lane.sleep?.cancel();
    }
  }

  private lane(destination: string): Lane {
    let lane = this.lanes.get(destination);
    if (lane === undefined) {
      if (this.lanes.size >= this.lanesPruneAt) this.prune();
      lane = { waiters: [], seen: undefined, horizon: 0, pumping: false, sleep: undefined };
      this.lanes.set(destination, lane);
    }
    return lane;
  }

  /** Lanes with nobody waiting and no come-back time ahead carry nothing worth keeping. */
  private prune(): void {
    const now = this.clock.now();
    for (const [d, lane] of this.lanes) if (!lane.pumping && lane.waiters.length === 0 && lane.horizon <= now) this.lanes.delete(d);
    this.lanesPruneAt = nextPruneAt(this.lanes.size);
  }

  /** One loop per destination while it has waiters: the head asks the port, the rest wait their turn. */
  private async pump(destination: string, lane: Lane): Promise<void> {
    if (lane.pumping) return;
    lane.pumping = true;
    try {
      for (;;) {
        const head = lane.waiters[0];
        if (head === undefined || this.closed) return;
        const limit = head.limit();
        if (limit === undefined) {
          // The limit was lifted while it waited.
          lane.waiters.shift();
          head.resolve(true);
          continue;
        }
        let r: RateTake;
        try {
          r = await this.port.take(destination, limit);
        } catch (err) {
          this.onError(err);
          r = { taken: false, tokens: 0, waitMs: ERROR_RETRY_MS };
        }
        lane.seen = { tokens: r.tokens, at: this.clock.now() };
        if (this.closed) {
          head.resolve(false);
          return;
        }
        if (r.taken) {
          lane.waiters.shift();
          head.resolve(true);
          continue;
        }
        // Everyone queued now waits at least this long: each is counted once, on its first wait.
        for (const w of lane.waiters) {
          if (w.counted) continue;
          w.counted = true;
          this.onWait(destination);
        }
        lane.sleep = sleepOn(this.clock, Math.max(1, r.waitMs));
        await lane.sleep.done;
        lane.sleep = undefined;
      }
    } finally {
      lane.pumping = false;
    }
  }
}
