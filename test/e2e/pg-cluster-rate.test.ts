/**
 * A per-destination rate limit holds across three nodes on one PostgreSQL queue (issue 7:
 * "per-destination concurrency and rate limits hold across all nodes"). Three real `postwire
 * serve` nodes with the same TOML config: `stuck.test` goes to a sink at one a minute (burst 1),
 * `limited.test` to another at RATE per second with BURST, everything else to a third, unlimited.
 * Messages go in round-robin over the nodes: the stuck ones first, then the limited, then the rest.
 *
 * Asserted: every message that got its 250 is delivered exactly once; in any window of W ms the
 * limited sink saw at most BURST + RATE × W (+ JITTER for the time between a node's token and the
 * sink's MAIL FROM) transactions start, whichever node started them, so the three nodes share one
 * bucket (three separate buckets would allow three times that); the limited run takes at least
 * the time the rate needs; the stuck destination started one delivery a minute, cluster-wide,
 * and its backlog held back neither the limited nor the unlimited mail behind it.
 * The limited mail goes in first and the rate is low, so the limit (not the submission, which
 * runs at a few dozen messages a second on this machine) sets the pace.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { countCopies, startCluster, submit } from '../support/cluster.js';
import type { Cluster } from '../support/cluster.js';
import { until } from '../support/wait.js';
import { mostIn, writeRateRoutes } from '../support/rate.js';

const LIMITED = 60;
const OTHER = 120;
const STUCK = 12;
const RATE = 4; // per second
const BURST = 4;
const JITTER = 2;

it(`a rate limit of ${RATE}/s burst ${BURST} holds across three nodes, each message delivered once, other destinations unhindered`, { timeout: 120_000 }, async () => {
  const stuck = await startFakeSmtp();
  const limited = await startFakeSmtp();
  const other = await startFakeSmtp();
  const dir = await mkdtemp(join(tmpdir(), 'postwire-pg-rate-'));
  let cluster: Cluster | undefined;
  try {
    const file = await writeRateRoutes(dir, { stuck: stuck.port, limited: limited.port, other: other.port }, RATE, BURST);
    cluster = await startCluster(3, ['--config', file, '--delivery', 'on', '--retry', '1s', '--lease-time', '10s', '--log-level', 'warn']);
    const ports = cluster.nodes.map((n) => n?.port ?? 0);
    const rcpt = (n: number): string => (n < LIMITED ? `l${n}@limited.test` : `o${n}@other.test`);
    const stuckSent = await submit({ total: STUCK, first: 1_000_000, lanesPerNode: 1, rcpt: (n) => `s${n}@stuck.test`, ports: () => ports });
    assert.equal(stuckSent.acked.size, STUCK);
    const first = await submit({ total: LIMITED, lanesPerNode: 2, rcpt, ports: () => ports });
    const then = await submit({ total: OTHER, first: LIMITED, lanesPerNode: 2, rcpt, ports: () => ports });
    assert.equal(first.acked.size + then.acked.size, LIMITED + OTHER, `every message got its 250 (other: ${[...first.other, ...then.other].slice(0, 3).join('; ')})`);
    const wantLimited = LIMITED;
    const wantOther = OTHER;
    const TOTAL = LIMITED + OTHER;
    await until('the other destination is done', () => countCopies(other.delivered).size >= wantOther, 90_000, 50);
    const limitedWhenOtherDone = limited.delivered.length;
    await until('the limited destination is done', () => countCopies(limited.delivered).size >= wantLimited, 90_000, 50);
    await new Promise((r) => setTimeout(r, 500));
    const stuckBound = 1 + Math.floor((Date.now() - (stuck.delivered[0]?.startedAt ?? Date.now())) / 60_000);
    assert.ok(stuck.delivered.length >= 1 && stuck.delivered.length <= stuckBound, `one a minute to the stuck destination from three nodes (${stuck.delivered.length}, at most ${stuckBound})`);

    const starts = limited.delivered.map((t) => t.startedAt).sort((a, b) => a - b);
    const span = (starts[starts.length - 1] ?? 0) - (starts[0] ?? 0);
    const perWindow = [500, 1_000, 2_000].map((w) => ({ w, most: mostIn(limited.delivered, w), bound: BURST + Math.floor((RATE * w) / 1_000) + JITTER }));
    console.log(`pg-cluster rate: ${wantLimited} to limited (${RATE}/s burst ${BURST}) from 3 nodes over ${span} ms; most per window ${JSON.stringify(perWindow)}; ` +
      `other (${wantOther}) done with ${limitedWhenOtherDone} of the limited delivered; stuck (1/m) ${stuck.delivered.length} of ${STUCK}; sink sessions ${limited.sessions}`);
    for (const { w, most, bound } of perWindow) assert.ok(most <= bound, `at most ${bound} deliveries started in ${w} ms cluster-wide (saw ${most})`);
    const needed = ((wantLimited - BURST - JITTER) / RATE) * 1_000;
    assert.ok(span >= needed, `the rate stretched the run to at least ${needed} ms (took ${span})`);
    const copies = new Map([...countCopies(limited.delivered), ...countCopies(other.delivered)]);
    for (let n = 0; n < TOTAL; n++) assert.equal(copies.get(rcpt(n)), 1, `message ${n} delivered once`);
    assert.equal(limited.delivered.length + other.delivered.length, TOTAL, 'no duplicates');
    assert.deepEqual(await cluster.stop(), [0, 0, 0]);
    cluster.nodes.splice(0);
  } finally {
    await cluster?.destroy();
    await stuck.close();
    await limited.close();
    await other.close();
    await rm(dir, { recursive: true, force: true });
  }
});
