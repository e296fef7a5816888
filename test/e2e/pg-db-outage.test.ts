/**
 * The database goes away under load (issue 7, "Operations"): two real nodes on one PostgreSQL
 * queue take a stream of messages while this test kills every database connection the nodes
 * hold, again and again for OUTAGE_MS (pg_terminate_backend, aimed only at this test's own
 * backends: their application_name starts with `postwire:<this test's schema>`).
 * Asserted:
 *   - clients get `451 4.3.0` at end-of-data for what could not be stored, never a 250 for it
 *     and never a 5xx; they send those messages again;
 *   - nothing that got a 250 is lost: every one reaches the sink; a recipient delivered twice is
 *     one whose message got a 451 first (the COMMIT may have landed while its reply was lost with
 *     the connection: the client's retry is then the duplicate; never a loss);
 *   - neither node crashed, and service resumes: after the outage 100 more messages all get their
 *     250 at the first try and are delivered; both nodes stop cleanly on SIGTERM.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { countCopies, startCluster, submit } from '../support/cluster.js';
import type { Cluster } from '../support/cluster.js';
import { until } from '../support/wait.js';
import { terminateOwn } from '../support/pg.js';

const FIRST = 600;
const AFTER = 100;
const OUTAGE_MS = 2000;

it('database connections killed under load: 451s, nothing lost, service resumes', { timeout: 150_000 }, async () => {
  const sink = await startFakeSmtp();
  let cluster: Cluster | undefined;
  try {
    cluster = await startCluster(2, ['--delivery', 'on', '--smarthost', `127.0.0.1:${sink.port}`, '--retry', '300ms', '--log-level', 'warn']);
    const c = cluster;
    const ports = c.nodes.map((n) => n?.port ?? 0);
    const rcptOf = (n: number): string => `r${n}@dest.test`;
    const during = submit({ total: FIRST, lanesPerNode: 4, rcpt: rcptOf, ports: () => ports, retryMs: 100, retries: 100 });
    await until('some mail accepted before the outage', () => sink.delivered.length >= 50, 60_000, 20);
    let kills = 0;
    const end = Date.now() + OUTAGE_MS;
    while (Date.now() < end) {
      kills += await terminateOwn(c.schema);
      await new Promise((r) => setTimeout(r, 25));
    }
    const sent = await during;
    assert.deepEqual(sent.other, [], 'no 5xx and no other reply');
    assert.equal(sent.acked.size, FIRST, 'every message got its 250 in the end (retried after 451s)');
    const wrong = sent.tempfailReplies.filter((t) => !t.startsWith('451 4.3.0'));
    assert.deepEqual(wrong, [], 'every refusal is 451 4.3.0');
    for (const [i, node] of c.nodes.entries()) assert.equal(node?.child.exitCode, null, `node ${i} is still running`);

    // Service resumes: a clean run, first try.
    const again = await submit({ total: AFTER, first: FIRST, lanesPerNode: 2, rcpt: rcptOf, ports: () => ports, retries: 0 });
    assert.equal(again.acked.size, AFTER, `after the outage every message is accepted at once (${again.tempfailed.size} tempfailed)`);
    const all = [...sent.acked.keys(), ...again.acked.keys()].map(rcptOf);
    await until('every accepted message at the sink', () => {
      const counts = countCopies(sink.delivered);
      return all.every((r) => counts.has(r));
    }, 90_000, 100);
    await new Promise((r) => setTimeout(r, 500));
    const counts = countCopies(sink.delivered);
    const duplicates = [...counts].filter(([, k]) => k > 1).map(([r]) => r);
    console.log(
      `pg-db-outage: ${kills} backends killed over ${OUTAGE_MS} ms; ${sent.tempfailReplies.length} x 451 to ${sent.tempfailed.size} messages; ` +
        `accepted ${sent.acked.size} + ${again.acked.size}; sink copies ${sink.delivered.length}, duplicates ${duplicates.length}`,
    );
    assert.ok(kills > 0, 'connections were killed');
    assert.ok(sent.tempfailed.size > 0, 'clients were told 451 while the database was unreachable');
    for (const rcpt of all) assert.ok(counts.has(rcpt), `${rcpt} delivered (nothing lost)`);
    for (const rcpt of duplicates) {
      const n = Number(/^r(\d+)@/.exec(rcpt)?.[1]);
      assert.ok(sent.tempfailed.has(n), `${rcpt} delivered twice, but its message never got a 451`);
    }
    assert.deepEqual(await c.stop(), [0, 0], 'both nodes stop cleanly');
    c.nodes.splice(0);
  } finally {
    await cluster?.destroy();
    await sink.close();
  }
});
