/**
 * Scale-out, the steady case (issue 7, "Must show"): three real `postwire serve` nodes share one
 * PostgreSQL queue (a schema of this test's own).
 *
 * 1. 3,000 messages go in round-robin over the three, each to its own recipient, and come out at
 *    one sink. Asserted: every message that got its 250 is delivered exactly once, byte-exact;
 *    the queue records every recipient delivered; the sink never saw more transactions at once
 *    than the destination's limit (the default 20, cluster-wide); SIGTERM stops every node
 *    cleanly (exit 0) and leaves no lease behind.
 * 2. A per-destination limit of 5 holds across the three nodes: 600 messages to a sink that
 *    answers each end-of-data after SLOW_MS, so deliveries pile up; the most transactions the
 *    sink saw in progress at once is at most 5, and more than 1. (Transactions, not sockets: each
 *    node keeps idle connections to the sink for reuse, and those deliver nothing.)
 * The limit case uses fewer messages because it only needs the pile-up, and a slow sink makes
 * every message cost SLOW_MS / 5 of wall time.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { withoutTraceHeader } from '../support/server.js';
import { bodyFor, countCopies, startCluster, submit } from '../support/cluster.js';
import type { Cluster } from '../support/cluster.js';
import { until } from '../support/wait.js';
import { admin } from '../support/pg.js';

const TOTAL = 3000;
const DEFAULT_LIMIT = 20;
const LIMITED = 600;
const SLOW_MS = 20;
const LIMIT = 5;

it('three nodes on one PostgreSQL queue deliver 3,000 messages round-robin, each exactly once', { timeout: 150_000 }, async () => {
  const sink = await startFakeSmtp();
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster(3, [
      '--delivery', 'on',
      '--smarthost', `127.0.0.1:${sink.port}`,
      '--retry', '500ms',
      '--lease-time', '5s',
      '--log-level', 'warn',
    ]);
    const c = cluster;
    const ports = c.nodes.map((n) => n?.port ?? 0);
    const started = Date.now();
    const sent = await submit({ total: TOTAL, lanesPerNode: 4, rcpt: (n) => `r${n}@dest.test`, ports: () => ports });
    const injected = Date.now();
    assert.equal(sent.acked.size, TOTAL, `every message got its 250 (${sent.tempfailed.size} tempfailed, other: ${sent.other.slice(0, 3).join('; ')})`);
    await until(`${TOTAL} recipients at the sink`, () => countCopies(sink.delivered).size >= TOTAL, 90_000, 100);
    const delivered = Date.now();
    // Let any duplicate that was going to happen happen.
    await new Promise((r) => setTimeout(r, 500));
    const counts = countCopies(sink.delivered);
    const twice = [...counts].filter(([, k]) => k > 1);
    const owners = await admin<{ owner: string; n: number }>(
      `SELECT split_part(next_hop, ' ', 1) AS owner, count(*)::int AS n FROM ${c.schema}.attempts GROUP BY 1`,
    );
    const states = await admin<{ state: string; n: number }>(`SELECT state, count(*)::int AS n FROM ${c.schema}.recipients GROUP BY state`);
    console.log(
      `pg-cluster: ${TOTAL} messages, injected in ${injected - started} ms, all at the sink after ${delivered - started} ms; ` +
        `sink copies ${sink.delivered.length}, duplicates ${twice.length}, max concurrent transactions ${sink.maxConcurrentTransactions} ` +
        `(max sockets ${sink.maxConcurrent}, sessions ${sink.sessions}); states ${JSON.stringify(states.rows)}; attempts ${owners.rowCount}`,
    );
    assert.deepEqual(twice, [], 'no recipient delivered twice');
    for (let n = 0; n < TOTAL; n++) assert.equal(counts.get(`r${n}@dest.test`), 1, `message ${n} delivered once`);
    for (const t of sink.delivered) {
      const n = Number(/^r(\d+)@/.exec(t.rcpts[0] ?? '')?.[1]);
      assert.ok(withoutTraceHeader(t.data).equals(bodyFor(n)), `message ${n} byte-exact`);
    }
    assert.ok(sink.maxConcurrentTransactions <= DEFAULT_LIMIT, `at most ${DEFAULT_LIMIT} deliveries at once cluster-wide (saw ${sink.maxConcurrentTransactions})`);
    await until('every recipient recorded delivered', async () => {
      const r = await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${c.schema}.recipients WHERE state = 'delivered'`);
      return r.rows[0]?.n === TOTAL;
    }, 20_000, 100);
    // Each node claimed and delivered a share: the sink's Received: headers name who accepted,
    // the queue's attempt lines say who delivered; the lease owner shows while a claim is live.
    const codes = await c.stop();
    assert.deepEqual(codes, [0, 0, 0], 'every node stops cleanly on SIGTERM');
    c.nodes.splice(0);
    const leased = await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${c.schema}.messages WHERE lease_token IS NOT NULL`);
    assert.equal(leased.rows[0]?.n, 0, 'drained nodes hold no lease');
  } finally {
    await cluster?.destroy();
    await sink.close();
  }
});

it('a per-destination limit of 5 holds across three nodes', { timeout: 120_000 }, async () => {
  const sink = await startFakeSmtp({ slowMs: SLOW_MS });
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster(3, [
      '--delivery', 'on',
      '--smarthost', `127.0.0.1:${sink.port}`,
      '--destination-concurrency', String(LIMIT),
      '--log-level', 'warn',
    ]);
    const ports = cluster.nodes.map((n) => n?.port ?? 0);
    const sent = await submit({ total: LIMITED, lanesPerNode: 3, rcpt: (n) => `slow-${n}@limited.test`, ports: () => ports });
    assert.equal(sent.acked.size, LIMITED);
    await until(`${LIMITED} recipients at the sink`, () => countCopies(sink.delivered).size >= LIMITED, 100_000, 100);
    console.log(`pg-cluster limit: ${LIMITED} messages, max concurrent transactions ${sink.maxConcurrentTransactions} (limit ${LIMIT}), max sockets ${sink.maxConcurrent}`);
    assert.ok(sink.maxConcurrentTransactions <= LIMIT, `at most ${LIMIT} deliveries at once cluster-wide (saw ${sink.maxConcurrentTransactions})`);
    assert.ok(sink.maxConcurrentTransactions > 1, `deliveries overlapped (saw ${sink.maxConcurrentTransactions})`);
    assert.equal([...countCopies(sink.delivered).values()].filter((k) => k > 1).length, 0, 'none twice');
    assert.deepEqual(await cluster.stop(), [0, 0, 0]);
    cluster.nodes.splice(0);
  } finally {
    await cluster?.destroy();
    await sink.close();
  }
});
