/**
 * `npm run build && node dist/bench/slots.js [--ops N] [--url postgres://...]`
 *
 * The measurement behind the cluster-wide destination limit (docs/queue.md): what one
 * take-and-give-back of a destination slot costs on PostgreSQL with each candidate mechanism,
 * with `limit` 5 and 3 nodes (3 connections) contending for one destination:
 *   - advisory: pg_try_advisory_lock over the free slot numbers, then pg_advisory_unlock +
 *     pg_notify (what queue/postgres/slots.ts does), and without the NOTIFY;
 *   - table, relaxed: a slots table with leases (UPDATE … WHERE the slot is free or its lease
 *     expired … FOR UPDATE SKIP LOCKED, then UPDATE to free it), synchronous_commit off;
 *   - table, durable: the same with synchronous_commit on (a lease a crash must not forget).
 * Reported per mechanism: takes+gives per second over the 3 connections, the median and p99 of
 * one take+give, and the WAL bytes written per take+give (pg_current_wal_lsn before and after).
 * LISTEN/NOTIFY alone is not a limit (it wakes waiters; it does not count holders), so it is
 * measured as the wake-up beside advisory locks, not as a mechanism of its own.
 * Everything runs in a schema of its own (pw_t_…), dropped at the end.
 */
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { openBenchSchema, quantile, walLsn } from './pg-bench.js';

const { values } = parseArgs({ options: { ops: { type: 'string', default: '3000' }, url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' } } });
const OPS = Number(values.ops);
const LIMIT = 5;
const NODES = 3;
const DEST = 'mx:example.net';

interface Mechanism {
  readonly name: string;
  setup(c: pg.Client): Promise<void>;
  /** Take a slot; returns its number or undefined when all are busy. */
  take(c: pg.Client, node: number): Promise<number | undefined>;
  give(c: pg.Client, node: number, slot: number): Promise<void>;
}

function advisory(schema: string, notify = true): Mechanism {
  return {
    name: notify ? 'advisory lock + NOTIFY' : 'advisory lock, no NOTIFY',
    async setup() {},
    async take(c) {
      const r = await c.query<{ s: number }>('SELECT s FROM unnest($2::int[]) AS s WHERE pg_try_advisory_lock(hashtext($1), s) LIMIT 1', [`${schema}:${DEST}`, [0, 1, 2, 3, 4]]);
      return r.rows[0]?.s;
    },
    async give(c, _node, slot) {
      if (notify) await c.query('SELECT pg_advisory_unlock(hashtext($1), $2), pg_notify($3, $4)', [`${schema}:${DEST}`, slot, `bench_${schema}`, DEST]);
      else await c.query('SELECT pg_advisory_unlock(hashtext($1), $2)', [`${schema}:${DEST}`, slot]);
    },
  };
}

function table(schema: string, durable: boolean): Mechanism {
  const sync = durable ? 'on' : 'off';
  return {
    name: `slots table with leases, synchronous_commit ${sync}`,
    async setup(c) {
      await c.query(`CREATE TABLE IF NOT EXISTS ${schema}.slots (destination text, slot int, owner text, until bigint, PRIMARY KEY (destination, slot))`);
      await c.query(`INSERT INTO ${schema}.slots SELECT $1, s, NULL, NULL FROM generate_series(0, $2 - 1) s ON CONFLICT DO NOTHING`, [DEST, LIMIT]);
    },
    async take(c, node) {
      const now = Date.now();
      const r = await c.query<{ slot: number }>(
        `SET synchronous_commit = ${sync};
         UPDATE ${schema}.slots SET owner = 'n${node}', until = ${now + 60_000}
         WHERE (destination, slot) = (SELECT destination, slot FROM ${schema}.slots
           WHERE destination = '${DEST}' AND (owner IS NULL OR until <= ${now}) LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING slot`,
      ) as unknown as Array<pg.QueryResult<{ slot: number }>>;
      return r[1]?.rows[0]?.slot;
    },
    async give(c, node, slot) {
      await c.query(`UPDATE ${schema}.slots SET owner = NULL, until = NULL WHERE destination = $1 AND slot = $2 AND owner = $3`, [DEST, slot, `n${node}`]);
    },
  };
}

async function measure(m: Mechanism, clients: pg.Client[], admin: pg.Client): Promise<string> {
  await m.setup(admin);
  const latencies: number[] = [];
  let done = 0;
  let misses = 0;
  const wal0 = await walLsn(admin);
  const t0 = process.hrtime.bigint();
  await Promise.all(clients.map(async (c, node) => {
    while (done < OPS) {
      const s0 = process.hrtime.bigint();
      const slot = await m.take(c, node);
      if (slot === undefined) {
        misses++;
        continue;
      }
      await m.give(c, node, slot);
      latencies.push(Number(process.hrtime.bigint() - s0) / 1e3);
      done++;
    }
  }));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const wal = Number((await walLsn(admin)) - wal0);
  latencies.sort((a, b) => a - b);
  return `| ${m.name} | ${(done / seconds).toFixed(0)} | ${quantile(latencies, 0.5).toFixed(0)} | ${quantile(latencies, 0.99).toFixed(0)} | ${(wal / done).toFixed(0)} | ${misses} |`;
}

async function main(): Promise<void> {
  const bench = await openBenchSchema(values.url, NODES);
  const { schema, admin, clients } = bench;
  try {
    const rows = [];
    for (const m of [advisory(schema, false), advisory(schema), table(schema, false), table(schema, true)]) rows.push(await measure(m, clients, admin));
    console.log(`\nslots: ${OPS} take+give of one of ${LIMIT} slots of one destination by ${NODES} connections at once`);
    console.log('| mechanism | take+give /s | p50 µs | p99 µs | WAL bytes / take+give | tries that found no free slot |');
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) console.log(r);
  } finally {
    await bench.close();
  }
}

main().catch((err: unknown) => {
  console.error(`bench slots: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
