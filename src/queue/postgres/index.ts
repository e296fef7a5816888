/**
 * @module queue/postgres
 * The shared queue backend's public surface: openPostgresStore(), migratePostgres(),
 * the cluster-wide destination slots (slots.ts) and rate buckets (rates.ts). main.ts and `postwire migrate` are the only
 * callers; everyone else sees a QueueStore.
 *
 * openPostgresStore() connects (a pool of `connections`), checks the schema version and refuses
 * (QUEUE_CORRUPT, saying to run `postwire migrate`) a schema that is missing, older or newer than
 * this build, unless `migrate: true` (tests) applies the migrations first. It then sweeps body
 * chunks no message owns that are older than a day (uploads that a crash cut short) and resolves.
 * It clears no lease: other nodes may be alive (see store.ts).
 *
 * Failure: QUEUE_IO when the database cannot be reached; QUEUE_INVALID for a bad schema name.
 * Trusts: every node sharing the schema runs a build that knows its version.
 */
import pg from 'pg';
import { QueueError } from '../store.js';
import { PgGroupCommitter } from './committer.js';
import type { CommitStats } from './committer.js';
import { checkSchemaName, createPool, ioError } from './db.js';
import { PG_MIGRATIONS, PG_SCHEMA_VERSION } from './migrations.js';
import type { PgMigration } from './migrations.js';
import { PgSchedule } from './schedule.js';
import type { AmbiguousTakeover } from './schedule.js';
import { PgQueueStore } from './store.js';

export { PgQueueStore } from './store.js';
export type { AmbiguousTakeover } from './schedule.js';
export { PG_MIGRATIONS, PG_SCHEMA_VERSION } from './migrations.js';
export type { PgMigration } from './migrations.js';
export { PgDestinationSlots } from './slots.js';
export type { SlotsOptions } from './slots.js';
export { PgDestinationRates, TAKE_SQL } from './rates.js';
export type { RatesOptions } from './rates.js';
export { CHUNK_SIZE } from './writer.js';

export interface PostgresStoreOptions {
  /** postgres://user@host:port/database */
  readonly url: string;
  /** The schema holding the queue's tables (default `postwire`). */
  readonly schema?: string;
  /** This node's name: the connections' application_name is `postwire:<node>`. */
  readonly node: string;
  /** Pool size (default 10). */
  readonly connections?: number;
  readonly clock?: { now(): number };
  /** Apply pending migrations at open instead of refusing an old schema (tests, `migrate`). */
  readonly migrate?: boolean;
  /** Most commits in one transaction (default 512). */
  readonly maxBatch?: number;
  /** Commit transactions in flight at once (default 2). */
  readonly maxFlushes?: number;
  /** A claim took over a dead holder's lease and found recipients inside the RFC 1047 window. */
  readonly onAmbiguous?: (found: AmbiguousTakeover[]) => void;
  /** A connection failed outside any operation (the server went away): logged, never thrown. */
  readonly onConnectionError?: (err: Error) => void;
}

export const DEFAULT_SCHEMA = 'postwire';
const ORPHAN_AGE_MS = 24 * 60 * 60_000;

export async function openPostgresStore(options: PostgresStoreOptions): Promise<PgQueueStore> {
  const schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const now = options.clock ? () => options.clock?.now() ?? Date.now() : () => Date.now();
  const pool = createPool({
    url: options.url,
    schema,
    applicationName: `postwire:${options.node}`,
    max: Math.max(2, options.connections ?? 10),
    onError: options.onConnectionError ?? (() => undefined),
  });
  try {
    if (options.migrate === true) await migrateWith(pool, schema);
    const version = await schemaVersion(pool, schema);
    if (version !== PG_SCHEMA_VERSION) {
      const what = version === 0 ? 'has no Postwire tables' : `is at version ${version}`;
      const fix = version > PG_SCHEMA_VERSION ? 'upgrade this node' : 'run `postwire migrate --queue URL` first';
      throw new QueueError('QUEUE_CORRUPT', `schema ${schema} ${what}; this build needs version ${PG_SCHEMA_VERSION}: ${fix}`);
    }
    await pool.query(
      `DELETE FROM bodies b WHERE b.written_at < $1 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = b.message_id)`,
      [now() - ORPHAN_AGE_MS],
    ).catch((err: unknown) => {
      throw ioError('sweep orphaned body chunks', err);
    });
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err instanceof QueueError ? err : ioError(`open queue ${schema}`, err);
  }
  const stats: CommitStats = { commits: 0, flushes: 0 };
  const committer = new PgGroupCommitter(pool, Math.max(1, options.maxBatch ?? 512), Math.max(1, options.maxFlushes ?? 2), stats);
  const schedule = new PgSchedule(pool, options.onAmbiguous ?? (() => undefined));
  return new PgQueueStore({
    description: `postgres:${redact(options.url)}#${schema}`,
    pool,
    now,
    committer,
    schedule,
    stats,
    end: () => pool.end().catch(() => undefined),
  });
}

export interface MigrateResult {
  readonly schema: string;
  readonly from: number;
  readonly to: number;
  readonly applied: readonly PgMigration[];
}

/** Create the schema if needed and apply every migration not applied yet (`postwire migrate`). */
export async function migratePostgres(url: string, schema: string = DEFAULT_SCHEMA, node = 'migrate'): Promise<MigrateResult> {
  checkSchemaName(schema);
  const pool = createPool({ url, schema, applicationName: `postwire:${node}`, max: 1, onError: () => undefined });
  try {
    return await migrateWith(pool, schema);
  } catch (err) {
    throw err instanceof QueueError ? err : ioError(`migrate ${schema}`, err);
  } finally {
    await pool.end().catch(() => undefined);
  }
}

async function migrateWith(pool: pg.Pool, schema: string): Promise<MigrateResult> {
  const client = await pool.connect();
  try {
    const from = await schemaVersion(client, schema);
    if (from > PG_SCHEMA_VERSION) {
      throw new QueueError('QUEUE_CORRUPT', `schema ${schema} is at version ${from}, newer than this build knows (${PG_SCHEMA_VERSION})`);
    }
    const applied: PgMigration[] = [];
    for (const m of [...PG_MIGRATIONS].sort((a, b) => a.version - b.version)) {
      await client.query('BEGIN; SET LOCAL synchronous_commit = on');
      try {
        // One migrator at a time per schema: nodes starting together apply each migration once.
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`postwire-migrate:${schema}`]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
        await client.query(`SET LOCAL search_path = ${schema}`);
        await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
        const done = await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
        if (done.rowCount === 0) {
          await client.query(m.sql);
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
          applied.push(m);
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    }
    return { schema, from, to: PG_SCHEMA_VERSION, applied };
  } finally {
    client.release();
  }
}

/** The newest applied migration, 0 when the schema or its table does not exist. */
async function schemaVersion(db: Pick<pg.PoolClient, 'query'>, schema: string): Promise<number> {
  const exists = await db.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${schema}.schema_migrations`]);
  if (exists.rows[0]?.t === null || exists.rows[0] === undefined) return 0;
  const r = await db.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${schema}.schema_migrations`);
  return r.rows[0]?.v ?? 0;
}

/** The URL without its password, for logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'postgres:(unparsable url)';
  }
}
