/**
 * @module queue/postgres/rates
 * Cluster-wide per-destination rate buckets: one row per destination in `destination_rates`
 * (tokens, and when they were counted), taken from by ONE statement: an upsert whose UPDATE
 * refills the bucket for the time passed, on the database's clock (clock_timestamp(), so the
 * nodes' clocks do not matter), and takes a token only WHERE one is there. Concurrent takes queue
 * on the row lock and each re-reads the row the previous one left (INSERT … ON CONFLICT DO UPDATE
 * always sees the newest version), so however many nodes ask, at most burst + rate × time tokens
 * are ever handed out. The qmgr port this implements is structural (qmgr/rates.ts DestinationRates).
 *
 * Why this and not the alternatives (docs/queue.md has the figures from bench/rates.ts): an
 * advisory lock plus read-modify-write is 4 round trips in a transaction instead of one; a
 * per-node share (rate / nodes, no database) wastes the rate whenever the work is uneven (a node
 * with all the mail of a destination gets a third of its rate) and needs the node count. The
 * table is UNLOGGED: a bucket is a few numbers that refill anyway, so it writes no WAL; a
 * database crash empties it, which lets one burst through per destination (stated, accepted).
 *
 * Failure: every driver error leaves as QueueError QUEUE_IO; the gate treats it as "no token"
 * and retries (fail closed). Rows of buckets that refilled are deleted now and then (prune), so
 * the table holds the destinations that were limited recently, not every destination ever seen.
 * Cost: one round trip and one row write (no WAL) per delivery started under a rate.
 */
import pg from 'pg';
import { systemClock } from '../../util/index.js';
import type { Clock } from '../../util/index.js';
import { createPool, query } from './db.js';

export interface RatesOptions {
  readonly url: string;
  readonly schema: string;
  readonly node: string;
  readonly onError?: (err: Error) => void;
  /** When to prune (the buckets themselves run on the database's clock); default the system's. */
  readonly clock?: Pick<Clock, 'now'>;
}

/** The rate limit as qmgr passes it (config's RateLimit, structurally). */
export interface RateLimitLike {
  readonly perMinute: number;
  readonly burst: number;
}

export interface RateTakeRow {
  readonly taken: boolean;
  readonly tokens: number;
  readonly waitMs: number;
}

/** Tokens now: the stored ones plus the refill since `at`, capped at the burst ($2 per ms, $3 burst). */
const REFILLED = `LEAST($3::float8, d.tokens + $2::float8 * GREATEST(0, extract(epoch FROM clock_timestamp() - d.at)::float8 * 1000))`;

export const TAKE_SQL = `
  WITH take AS (
    INSERT INTO destination_rates AS d (destination, tokens, at, per_ms, burst)
    VALUES ($1, $3::float8 - 1, clock_timestamp(), $2, $3)
    ON CONFLICT (destination) DO UPDATE
      SET tokens = ${REFILLED} - 1, at = GREATEST(d.at, clock_timestamp()), per_ms = $2, burst = $3
      WHERE ${REFILLED} >= 1
    RETURNING d.tokens
  )
  SELECT true AS taken, tokens FROM take
  UNION ALL
  SELECT false, ${REFILLED} FROM destination_rates d WHERE d.destination = $1 AND NOT EXISTS (SELECT 1 FROM take)`;

const PEEK_SQL = `SELECT ${REFILLED} AS tokens FROM destination_rates d WHERE d.destination = $1`;

/** A row whose bucket has refilled says nothing a missing row does not. */
const PRUNE_SQL = `DELETE FROM destination_rates d
  WHERE d.tokens + d.per_ms * GREATEST(0, extract(epoch FROM clock_timestamp() - d.at)::float8 * 1000) >= d.burst`;
const PRUNE_EVERY_MS = 5 * 60_000;

export class PgDestinationRates {
  private readonly pool: pg.Pool;
  private readonly clock: Pick<Clock, 'now'>;
  private lastPrune: number;
  /** Statements run, for the docs' cost figures and tests. */
  queries = 0;

  constructor(options: RatesOptions) {
    this.clock = options.clock ?? systemClock;
    this.lastPrune = this.clock.now();
    // Two connections: takes of different destinations need not queue behind each other's round trip.
    this.pool = createPool({
      url: options.url,
      schema: options.schema,
      applicationName: `postwire:${options.node}:rates`,
      max: 2,
      onError: options.onError ?? (() => undefined),
    });
  }

  async take(destination: string, limit: RateLimitLike): Promise<RateTakeRow> {
    const perMs = limit.perMinute / 60_000;
    this.queries++;
    const r = await query<{ taken: boolean; tokens: number }>(this.pool, `take a token of ${destination}`, TAKE_SQL, [destination, perMs, limit.burst]);
    this.maybePrune();
    const row = r.rows[0];
    // No row at all: another node inserted the bucket after this statement's snapshot; it was full and is now burst - 1: try again soon.
    if (row === undefined) return { taken: false, tokens: 0, waitMs: Math.max(1, Math.ceil(1 / perMs / 10)) };
    if (row.taken) return { taken: true, tokens: row.tokens, waitMs: 0 };
    return { taken: false, tokens: row.tokens, waitMs: Math.max(1, Math.ceil((1 - row.tokens) / perMs)) };
  }

  async peek(destination: string, limit: RateLimitLike): Promise<number> {
    this.queries++;
    const r = await query<{ tokens: number }>(this.pool, `read the bucket of ${destination}`, PEEK_SQL, [destination, limit.perMinute / 60_000, limit.burst]);
    return r.rows[0]?.tokens ?? limit.burst;
  }

  private maybePrune(): void {
    const now = this.clock.now();
    if (now - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now;
    void query(this.pool, 'prune refilled buckets', PRUNE_SQL).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}
