/**
 * @module queue/postgres/db
 * The connection layer of the shared queue: one pg.Pool per store, configured so that
 *   - every connection's search_path is the queue's schema (tests and several queues share a
 *     database, each in its own schema) and its application_name names the node
 *     (`postwire:<node>`), so operators (and tests) can tell whose backend is whose;
 *   - bigint columns (ms timestamps, sizes) come back as numbers;
 *   - synchronous_commit is OFF by default on every connection: the writes that must survive a
 *     database crash (commit of a message, an attempt, hold, release, purge) run in durableTx(),
 *     which sets it back ON for their transaction. A durable commit flushes the WAL up to its own
 *     commit record, so it also makes every earlier relaxed write durable (body chunks streamed
 *     before the message's commit are exactly that case).
 *   - an error on an idle or checked-out client (the server restarted, pg_terminate_backend) is
 *     reported to `onError` and never thrown as an unhandled 'error' event, which would kill the
 *     process; the broken client is discarded and the pool connects a new one on next use.
 *
 *   - every statement with parameters runs as a named prepared statement (the name is a hash of
 *     its text), so each connection parses and plans it once, not on every call: the database's
 *     CPU per message was the cluster's largest cost (docs/benchmarks.md).
 *
 * Failure: every driver error leaves here as QueueError QUEUE_IO naming what was being done.
 * Cost: tx() is BEGIN (+ SET LOCAL in the same round trip) and COMMIT around the work.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { QueueError } from '../store.js';

const INT8_OID = 20;

export interface PoolSettings {
  readonly url: string;
  /** Lower-case identifier: letters, digits, underscore. */
  readonly schema: string;
  readonly applicationName: string;
  readonly max: number;
  /** How long to wait for a connection before the operation fails (QUEUE_IO). */
  readonly connectTimeoutMs?: number;
  readonly onError: (err: Error) => void;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function checkSchemaName(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) {
    throw new QueueError('QUEUE_INVALID', `queue schema ${JSON.stringify(schema)}: use lower-case letters, digits and _ (at most 63)`);
  }
  return schema;
}

const typeParser = (oid: number, format?: string): ((value: string) => unknown) => {
  if (oid === INT8_OID) return (value: string) => Number(value);
  return pg.types.getTypeParser(oid, (format ?? 'text') as 'text') as (value: string) => unknown;
};

export function createPool(settings: PoolSettings): pg.Pool {
  const schema = checkSchemaName(settings.schema);
  const pool = new pg.Pool({
    connectionString: settings.url,
    application_name: settings.applicationName.slice(0, 63),
    options: `-c search_path=${schema} -c synchronous_commit=off`,
    max: settings.max,
    connectionTimeoutMillis: settings.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    types: { getTypeParser: typeParser } as unknown as pg.CustomTypesConfig,
  });
  pool.on('error', (err) => settings.onError(err));
  pool.on('connect', (client) => {
    client.on('error', (err) => settings.onError(err));
  });
  return pool;
}

export function ioError(what: string, err: unknown): QueueError {
  if (err instanceof QueueError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new QueueError('QUEUE_IO', `${what}: ${message}`, { cause: err });
}

export type Queryable = Pick<pg.PoolClient, 'query'>;

const statementNames = new Map<string, string>();

/** The prepared-statement name of a statement text: stable, and distinct per text. */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `pw_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}

/** `db` whose parameterised statements run prepared (named); plain ones (BEGIN, COMMIT) as they are. */
export function prepared(db: Queryable): Queryable {
  const run = (text: string, values?: readonly unknown[]): Promise<pg.QueryResult> =>
    values === undefined ? db.query(text) : db.query({ name: statementName(text), text, values: values as unknown[] });
  return { query: run as unknown as Queryable['query'] };
}

/**
 * One transaction on one pooled connection. `durable`: the commit waits for the WAL flush.
 * A QueueError thrown by `work` (a lost lease, an invalid record) rolls back and passes through
 * as it is; any other failure is QUEUE_IO. A connection whose ROLLBACK failed is discarded.
 */
export async function tx<T>(pool: pg.Pool, what: string, durable: boolean, work: (c: Queryable) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw ioError(what, err);
  }
  let broken: Error | undefined;
  try {
    await client.query(durable ? 'BEGIN; SET LOCAL synchronous_commit = on' : 'BEGIN');
    const result = await work(prepared(client));
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: unknown) => {
      broken = e instanceof Error ? e : new Error(String(e));
    });
    throw ioError(what, err);
  } finally {
    client.release(broken);
  }
}

/** One statement outside a transaction (relaxed: synchronous_commit off). */
export async function query<R extends pg.QueryResultRow>(pool: pg.Pool, what: string, text: string, values: readonly unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>({ name: statementName(text), text, values: values as unknown[] });
  } catch (err) {
    throw ioError(what, err);
  }
}
