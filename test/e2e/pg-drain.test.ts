/**
 * A node drains on SIGTERM (issue 7, "Operations"): node 0 alone holds claimed work for a slow
 * sink when it gets SIGTERM. It stops claiming, lets the deliveries in flight finish and record,
 * gives back what it had claimed and not started (no attempt recorded for those), and exits 0
 * holding no lease. A second node started afterwards delivers the rest at once: long before
 * node 0's leases (--lease-time 60s) could have expired. Every message is delivered exactly once.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { countCopies, submit } from '../support/cluster.js';
import { migrateSchema } from '../support/cluster.js';
import { startServe } from '../support/process.js';
import type { ServeProcess } from '../support/process.js';
import { until } from '../support/wait.js';
import { PG_URL, admin, dropSchema, testSchemaName } from '../support/pg.js';

const TOTAL = 200;

it('SIGTERM drains a node: in-flight work finishes, the rest is given back, another node takes it at once', { timeout: 120_000 }, async () => {
  const sink = await startFakeSmtp({ slowMs: 100 });
  const schema = testSchemaName();
  const nodes: ServeProcess[] = [];
  try {
    await migrateSchema(schema);
    const flags = (i: number): string[] => [
      '--queue', PG_URL, '--queue-schema', schema, '--node-name', `${schema}-n${i}`, '--queue-connections', '4',
      '--delivery', 'on', '--smarthost', `127.0.0.1:${sink.port}`, '--destination-concurrency', '5', '--max-deliveries', '10',
      '--lease-time', '60s', '--log-level', 'warn',
    ];
    const first = await startServe(flags(0));
    nodes.push(first);
    const sent = await submit({ total: TOTAL, lanesPerNode: 4, rcpt: (n) => `slow-${n}@dest.test`, ports: () => [first.port] });
    assert.equal(sent.acked.size, TOTAL);
    await until('node 0 delivering', () => sink.delivered.length >= 10, 30_000, 20);
    const heldBefore = await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.messages WHERE lease_owner = $1`, [`${schema}-n0`]);
    first.kill('SIGTERM');
    assert.equal(await first.exited, 0, 'node 0 exits cleanly');
    const deliveredByFirst = sink.delivered.length;
    const left = await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.messages WHERE lease_token IS NOT NULL`);
    assert.equal(left.rows[0]?.n, 0, 'no lease is left behind');
    const notStarted = await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.attempts WHERE results LIKE '%shutting down%'`);
    assert.equal(notStarted.rows[0]?.n, 0, 'work not started is given back, not recorded as a deferral');

    const started = Date.now();
    const second = await startServe(flags(1));
    nodes.push(second);
    await until('everything delivered', () => countCopies(sink.delivered).size >= TOTAL, 60_000, 50);
    const took = Date.now() - started;
    const counts = countCopies(sink.delivered);
    console.log(`pg-drain: node 0 held ${heldBefore.rows[0]?.n} leases at SIGTERM, delivered ${deliveredByFirst}; node 1 delivered the other ${TOTAL - deliveredByFirst} in ${took} ms`);
    assert.ok(deliveredByFirst < TOTAL, 'node 0 had work left when it drained');
    assert.ok(took < 55_000, 'node 1 did not wait for node 0\'s leases to expire');
    assert.deepEqual([...counts.values()].filter((k) => k !== 1), [], 'each delivered exactly once');
    second.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  } finally {
    for (const n of nodes) {
      n.kill('SIGKILL');
      await n.exited;
    }
    await dropSchema(schema);
    await sink.close();
  }
});
