/**
 * The cluster-wide rate buckets on the PostgreSQL server: the DestinationRates conformance suite
 * (three "nodes" = three PgDestinationRates, each with its own connections, on one schema), and
 * the migration that makes the table.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { migratePostgres, PgDestinationRates } from './index.js';
import { PG_URL, admin, dropSchema, testSchemaName } from '../../../test/support/pg.js';
import { runRatesConformance } from '../../../test/support/rates-conformance.js';

runRatesConformance('postgres', async (nodes) => {
  const schema = testSchemaName();
  await migratePostgres(PG_URL, schema, `${schema}-migrate`);
  const rates = Array.from({ length: nodes }, (_, i) => new PgDestinationRates({ url: PG_URL, schema, node: `${schema}-n${i}` }));
  return {
    nodes: rates,
    close: async () => {
      await Promise.all(rates.map((r) => r.close()));
      await dropSchema(schema);
    },
  };
}, { shared: true });

it('postgres rates: the bucket table is unlogged (no WAL per delivery) and one take is one statement', async () => {
  const schema = testSchemaName();
  await migratePostgres(PG_URL, schema, `${schema}-migrate`);
  const rates = new PgDestinationRates({ url: PG_URL, schema, node: `${schema}-n0` });
  try {
    const r = await admin<{ p: string }>(`SELECT relpersistence AS p FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'destination_rates'`, [schema]);
    assert.equal(r.rows[0]?.p, 'u');
    await rates.take('mx:a.test', { perMinute: 60, burst: 2 });
    await rates.take('mx:a.test', { perMinute: 60, burst: 2 });
    assert.equal(rates.queries, 2);
    const row = await admin<{ tokens: number; burst: number }>(`SELECT tokens, burst FROM ${schema}.destination_rates WHERE destination = 'mx:a.test'`);
    assert.ok((row.rows[0]?.tokens ?? 9) < 1, 'two of two tokens taken');
  } finally {
    await rates.close();
    await dropSchema(schema);
  }
});
