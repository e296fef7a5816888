/**
 * Scale-out, a node dies (issue 7, "Must show"): three real `postwire serve` nodes share one
 * PostgreSQL queue; 3,000 messages go in round-robin to a sink that answers each end-of-data
 * after SLOW_MS, and node 0 is SIGKILLed in the middle, while it holds claimed work (some of it
 * with end-of-data already sent). Its clients move to the other nodes; a message whose 250 never
 * came is the client's to retry, not the relay's to deliver, so it is not counted.
 * Asserted:
 *   - zero lost: every message that got its 250 (from any node, node 0 included) reaches the sink;
 *   - duplicates only among recipients logged as ambiguous (the surviving nodes log one
 *     'ambiguous' line per recipient they find inside the dead node's RFC 1047 window when they
 *     take its lease over), never more than two copies; the history holds the same recipients
 *     (note 'ambiguous-at-restart');
 *   - the dead node's work (the messages it held leases on at the kill) is delivered: what it had
 *     not settled is taken over and recorded by the others, only after its lease expired
 *     (--lease-time 2s);
 *   - the two survivors stop cleanly on SIGTERM.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { withoutTraceHeader } from '../support/server.js';
import { ambiguousRcpt, bodyFor, countCopies, startCluster, submit } from '../support/cluster.js';
import type { Cluster } from '../support/cluster.js';
import { until } from '../support/wait.js';
import { admin } from '../support/pg.js';
import { AMBIGUOUS_AT_RESTART } from '../../src/queue/index.js';

const TOTAL = 3000;
const SLOW_MS = 30;
const KILL_AFTER = 800;
const LEASE_MS = 2000;

it('one of three nodes SIGKILLed mid-delivery: nothing lost, duplicates only among ambiguous-logged recipients, its work taken over after its lease', { timeout: 180_000 }, async () => {
  const sink = await startFakeSmtp({ slowMs: SLOW_MS });
  const loggedAmbiguous = new Set<string>();
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster(3, [
      '--delivery', 'on',
      '--smarthost', `127.0.0.1:${sink.port}`,
      '--lease-time', `${LEASE_MS}ms`,
      '--retry', '300ms',
      '--max-deliveries', '20',
      '--log-level', 'warn',
    ], (_node, line) => {
      const rcpt = ambiguousRcpt(line);
      if (rcpt !== undefined) loggedAmbiguous.add(rcpt);
    });
    const c = cluster;
    const rcptOf = (n: number): string => `slow-${n}@dest.test`;
    let killed = false;
    const ports = (): number[] => c.nodes.flatMap((node, i) => (node && !(killed && i === 0) ? [node.port] : []));
    const submitting = submit({ total: TOTAL, lanesPerNode: 4, rcpt: rcptOf, ports });
    await until(`${KILL_AFTER} deliveries at the sink`, () => sink.delivered.length >= KILL_AFTER, 120_000, 20);
    killed = true;
    c.nodes[0]?.kill('SIGKILL');
    await c.nodes[0]?.exited;
    c.nodes[0] = undefined;
    const killAt = Date.now();
    const held = await admin<{ id: string; lease_until: number }>(
      `SELECT id, lease_until::float8 AS lease_until FROM ${c.schema}.messages WHERE lease_owner = $1 AND lease_token IS NOT NULL`,
      [c.nodeName(0)],
    );
    const dead = new Map(held.rows.map((r) => [r.id, Number(r.lease_until)]));
    const sent = await submitting;
    const acked = new Set([...sent.acked.keys()].map(rcptOf));
    await until('every acknowledged message at the sink', () => {
      const counts = countCopies(sink.delivered);
      return [...acked].every((r) => counts.has(r));
    }, 150_000, 100);
    await until("the dead node's work recorded delivered", async () => {
      if (dead.size === 0) return true;
      const r = await admin<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${c.schema}.recipients WHERE message_id = ANY($1::text[]) AND state <> 'delivered'`, [[...dead.keys()]],
      );
      return r.rows[0]?.n === 0;
    }, 60_000, 100);
    await new Promise((r) => setTimeout(r, 500));

    const counts = countCopies(sink.delivered);
    const duplicates = [...counts].filter(([, k]) => k > 1).map(([r]) => r);
    const history = await admin<{ message_id: string; results: string; at: number }>(
      `SELECT message_id, results, at::float8 AS at FROM ${c.schema}.attempts WHERE note = $1`, [AMBIGUOUS_AT_RESTART.note],
    );
    const inHistory = new Set<string>();
    const addresses = await admin<{ message_id: string; idx: number; address: string }>(`SELECT message_id, idx, address FROM ${c.schema}.recipients`);
    const addressOf = new Map(addresses.rows.map((r) => [`${r.message_id}/${r.idx}`, r.address]));
    for (const h of history.rows) for (const r of JSON.parse(h.results) as Array<{ recipient: number }>) inHistory.add(addressOf.get(`${h.message_id}/${r.recipient}`) ?? '?');
    // History written after the kill is the survivors' (a dead node records nothing); what node 0
    // recorded before it (an earlier deferral under load) does not count.
    const takeovers = await admin<{ message_id: string; first_at: number }>(
      `SELECT message_id, min(at)::float8 AS first_at FROM ${c.schema}.attempts WHERE message_id = ANY($1::text[]) AND at >= $2 GROUP BY message_id`,
      [[...dead.keys()], killAt],
    );
    console.log(
      `pg-cluster-kill: acked ${acked.size} of ${TOTAL} (${sent.acked.size}), sink copies ${sink.delivered.length}, duplicates ${duplicates.length}, ` +
        `ambiguous logged ${loggedAmbiguous.size} (history ${inHistory.size}), dead node held ${dead.size} leases at the kill, ` +
        `${takeovers.rowCount} of them recorded by the others`,
    );

    for (const rcpt of acked) assert.ok(counts.has(rcpt), `${rcpt} delivered (zero lost)`);
    for (const rcpt of duplicates) {
      assert.ok(loggedAmbiguous.has(rcpt), `${rcpt} delivered ${counts.get(rcpt)} times but never logged ambiguous`);
      assert.ok((counts.get(rcpt) ?? 0) <= 2, `${rcpt} delivered ${counts.get(rcpt)} times`);
    }
    assert.deepEqual([...inHistory].sort(), [...loggedAmbiguous].sort(), "the 'ambiguous' lines and the history name the same recipients");
    for (const t of sink.delivered) {
      const n = Number(/^slow-(\d+)@/.exec(t.rcpts[0] ?? '')?.[1]);
      assert.ok(withoutTraceHeader(t.data).equals(bodyFor(n)), `message ${n} byte-exact`);
    }
    assert.ok(dead.size > 0, 'the killed node held work at the kill');
    // Every message the dead node held is delivered (waited for above). Those it had not settled
    // were taken over and recorded by a survivor, never before its lease ran out; the others it had
    // settled (every recipient delivered, the attempt not yet recorded) need no second run.
    const firstAt = new Map(takeovers.rows.map((r) => [r.message_id, Number(r.first_at)]));
    for (const [id, until_] of dead) {
      const at = firstAt.get(id);
      if (at !== undefined) assert.ok(at >= until_, `${id} recorded at ${at}, before the dead node's lease ended at ${until_}`);
    }
    assert.ok(firstAt.size > 0, "some of the dead node's work was taken over by the others");
    const codes = await c.stop();
    assert.deepEqual(codes, [0, 0], 'the survivors stop cleanly');
    c.nodes.splice(0);
  } finally {
    await cluster?.destroy();
    await sink.close();
  }
});
