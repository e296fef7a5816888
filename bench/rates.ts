/**
 * `npm run build && node dist/bench/rates.js [--ops N] [--url postgres://...]`
 *
 * The measurement behind the cluster-wide rate limit (docs/queue.md): what one token take costs
 * on PostgreSQL with each candidate mechanism, 3 connections (3 nodes) taking from one
 * destination's bucket at once, and how exact each is:
 *   - upsert, unlogged: one INSERT … ON CONFLICT DO UPDATE … WHERE tokens >= 1 RETURNING on an
 *     UNLOGGED table, on the database's clock (what queue/postgres/rates.ts does);
 *   - upsert, logged: the same statement on an ordinary table (WAL per take);
 *   - advisory lock + row: BEGIN; pg_advisory_xact_lock; SELECT the row; UPDATE it; COMMIT
 *     (the bucket arithmetic in the node, on the node's clock);
 *   - per-node share: no database at all, each node a local bucket of rate / 3.
 * Cost: takes per second with a rate so high every take succeeds, the median and p99 of one take,
 * WAL bytes per take. Exactness: 3 connections hammering a 600/m burst 5 bucket for 3 s, tokens
 * granted against the bound burst + rate × time (35); for the per-node share also when all the
 * work is on one node (it gets a third of the rate).
 * A warm-up pass runs first and is not reported (the first mechanism measured otherwise pays for
 * the connections' first plans). WAL bytes are the server's, so other sessions' writes during
 * the run are counted too: on a shared server read them as an upper bound.
 * Everything runs in a schema of its own (pw_t_…), dropped at the end.
 */
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { openBenchSchema, quantile, walLsn } from './pg-bench.js';
import { PG_MIGRATIONS, TAKE_SQL } from '../src/queue/postgres/index.js';
import { LocalDestinationRates } from '../src/qmgr/index.js';
import { systemClock } from '../src/util/index.js';

const { values } = parseArgs({ options: { ops: { type: 'string', default: '6000' }, url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test' } } });
const OPS = Number(values.ops);
const NODES = 3;
const DEST = 'mx:example.net';
const FAST = { perMinute: 60_000_000, burst: 1_000_000 };
const EXACT = { perMinute: 600, burst: 5 };
const EXACT_MS = 3_000;

interface Mechanism {
  readonly name: string;
  setup(admin: pg.Client): Promise<void>;
  take(c: pg.Client, limit: { perMinute: number; burst: number }): Promise<boolean>;
}

function upsert(schema: string, logged: boolean): Mechanism {
  const table = logged ? 'rates_logged' : 'destination_rates';
  const sql = TAKE_SQL.replaceAll('destination_rates', `${schema}.${table}`);
  return {
    name: logged ? 'upsert, logged table' : 'upsert, unlogged table (chosen)',
    async setup(admin) {
      if (logged) await admin.query(`CREATE TABLE IF NOT EXISTS ${schema}.rates_logged (LIKE ${schema}.destination_rates INCLUDING ALL)`);
      await admin.query(`DELETE FROM ${schema}.${table}`);
    },
    async take(c, limit) {
      const r = await c.query<{ taken: boolean }>({ name: `take_${table}`, text: sql, values: [DEST, limit.perMinute / 60_000, limit.burst] });
      return r.rows[0]?.taken === true;
    },
  };
}

function advisoryRow(schema: string): Mechanism {
  return {
    name: 'advisory lock + row read/update',
    async setup(admin) {
      await admin.query(`CREATE TABLE IF NOT EXISTS ${schema}.rates_adv (destination text PRIMARY KEY, tokens float8 NOT NULL, at bigint NOT NULL)`);
      await admin.query(`DELETE FROM ${schema}.rates_adv`);
    },
    async take(c, limit) {
      await c.query('BEGIN');
      try {
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${schema}:${DEST}`]);
        const r = await c.query<{ tokens: number; at: string }>(`SELECT tokens, at FROM ${schema}.rates_adv WHERE destination = $1`, [DEST]);
        const now = Date.now();
        const row = r.rows[0];
        const tokens = row === undefined ? limit.burst : Math.min(limit.burst, row.tokens + ((now - Number(row.at)) * limit.perMinute) / 60_000);
        const taken = tokens >= 1;
        if (taken) {
          await c.query(`INSERT INTO ${schema}.rates_adv VALUES ($1, $2, $3) ON CONFLICT (destination) DO UPDATE SET tokens = $2, at = $3`, [DEST, tokens - 1, now]);
        }
        await c.query('COMMIT');
        return taken;
      } catch (err) {
        await c.query('ROLLBACK');
        throw err;
      }
    },
  };
}

async function cost(m: Mechanism, clients: pg.Client[], admin: pg.Client): Promise<{ perSecond: number; p50: number; p99: number; wal: number }> {
  await m.setup(admin);
  const latencies: number[] = [];
  let done = 0;
  const wal0 = await walLsn(admin);
  const t0 = process.hrtime.bigint();
  await Promise.all(clients.map(async (c) => {
    while (done < OPS) {
      const s0 = process.hrtime.bigint();
      await m.take(c, FAST);
      latencies.push(Number(process.hrtime.bigint() - s0) / 1e3);
      done++;
    }
  }));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const wal = Number((await walLsn(admin)) - wal0);
  latencies.sort((a, b) => a - b);
  return { perSecond: done / seconds, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), wal: wal / done };
}

/** Tokens granted to `takers` hammering for EXACT_MS, and the bound burst + rate × elapsed. */
async function exactness(takers: ReadonlyArray<() => Promise<boolean>>): Promise<{ granted: number; bound: number }> {
  let granted = 0;
  const t0 = Date.now();
  await Promise.all(takers.map(async (take) => {
    while (Date.now() - t0 < EXACT_MS) {
      if (await take()) granted++;
      else await new Promise((r) => setImmediate(r));
    }
  }));
  const elapsed = Date.now() - t0;
  return { granted, bound: EXACT.burst + Math.floor((elapsed * EXACT.perMinute) / 60_000) };
}

async function main(): Promise<void> {
  const bench = await openBenchSchema(values.url, NODES, '-c synchronous_commit=off');
  const { schema, admin, clients } = bench;
  await admin.query(`SET search_path = ${schema}`);
  await admin.query(PG_MIGRATIONS.find((m) => m.version === 2)?.sql ?? '');
  try {
    const rows: string[] = [];
    // A first pass warms the connections, the plans and the server's caches; it is not reported.
    await cost(upsert(schema, false), clients, admin);
    for (const m of [upsert(schema, false), upsert(schema, true), advisoryRow(schema)]) {
      const c = await cost(m, clients, admin);
      await m.setup(admin);
      const e = await exactness(clients.map((client) => () => m.take(client, EXACT)));
      rows.push(`| ${m.name} | ${c.perSecond.toFixed(0)} | ${c.p50.toFixed(0)} | ${c.p99.toFixed(0)} | ${c.wal.toFixed(0)} | ${e.granted} of ${e.bound} |`);
    }
    const share = { perMinute: EXACT.perMinute / NODES, burst: Math.max(1, Math.round(EXACT.burst / NODES)) };
    const nodes = Array.from({ length: NODES }, () => new LocalDestinationRates(systemClock));
    const even = await exactness(nodes.map((n) => async () => (await n.take(DEST, share)).taken));
    const lone = await exactness([async () => ((await nodes[0]?.take('mx:lone.test', share))?.taken ?? false)]);
    rows.push(`| per-node share (rate / ${NODES}), no database | – | – | – | 0 | ${even.granted} of ${even.bound}; all work on one node: ${lone.granted} of ${lone.bound} |`);
    console.log(`\nrates: ${OPS} takes from one destination's bucket by ${NODES} connections at once; exactness: ${NODES} takers on ${EXACT.perMinute}/m burst ${EXACT.burst} for ${EXACT_MS} ms`);
    console.log('| mechanism | takes /s | p50 µs | p99 µs | WAL bytes / take | tokens granted of the bound |');
    console.log('|---|---|---|---|---|---|');
    for (const r of rows) console.log(r);
  } finally {
    await bench.close();
  }
}

main().catch((err: unknown) => {
  console.error(`bench rates: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  process.exitCode = 1;
});
