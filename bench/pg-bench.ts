/**
 * @module bench/pg-bench
 * What the PostgreSQL mechanism benchmarks (bench/slots.ts, bench/rates.ts) share: a schema of
 * their own with an admin connection and one connection per node, WAL position reads, and the
 * quantile of a sorted latency list.
 */
import pg from 'pg';
import { dropSchema, testSchemaName } from '../test/support/pg.js';

export interface BenchSchema {
  readonly schema: string;
  /** Sets up the mechanisms and reads the WAL position. */
  readonly admin: pg.Client;
  /** One per node, contending for the same destination. */
  readonly clients: pg.Client[];
  /** Ends every connection and drops the schema. */
  close(): Promise<void>;
}

/** A fresh pw_t_… schema; `options` is the connections' libpq options (e.g. `-c synchronous_commit=off`). */
export async function openBenchSchema(url: string, nodes: number, options?: string): Promise<BenchSchema> {
  const schema = testSchemaName();
  const connect = async (name: string): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: url, application_name: `postwire:${schema}-${name}`, ...(options !== undefined ? { options } : {}) });
    await c.connect();
    return c;
  };
  const admin = await connect('admin');
  await admin.query(`CREATE SCHEMA ${schema}`);
  const clients = await Promise.all(Array.from({ length: nodes }, (_, i) => connect(`n${i}`)));
  return {
    schema,
    admin,
    clients,
    async close() {
      await Promise.all([...clients, admin].map((c) => c.end()));
      await dropSchema(schema);
    },
  };
}

/** The server's WAL position in bytes (WAL written between two reads is their difference). */
export async function walLsn(c: pg.Client): Promise<bigint> {
  const r = await c.query<{ b: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS b");
  return BigInt((r.rows[0]?.b ?? '0').split('.')[0] ?? '0');
}

/** The q-quantile (0..1) of an ascending list; NaN when it is empty. */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}
