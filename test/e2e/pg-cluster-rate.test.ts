/**
 * A per-destination rate limit holds across three nodes on one PostgreSQL queue (issue 7:
 * "per-destination concurrency and rate limits hold across all nodes"). Three real `postwire
 * serve` nodes with the same TOML config: `limited.test` goes to one sink at RATE per second with
 * BURST, everything else to another sink, unlimited. Messages go in round-robin over the nodes.
 *
 * Asserted: every message that got its 250 is delivered exactly once; in any window of W ms the
 * limited sink saw at most BURST + RATE × W (+ JITTER for the time between a node's token and the
 * sink's MAIL FROM) transactions start, whichever node started them, so the three nodes share one
 * bucket (three separate buckets would allow three times that); the limited run takes at least
 * the time the rate needs; the unlimited destination's mail, submitted after all the limited
 * mail, is done while the limited one is still going.
 * The limited mail goes in first and the rate is low, so the limit (not the submission, which
 * runs at a few dozen messages a second on this machine) sets the pace.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import type { SinkTransaction } from '../fakes/fake-smtp-server.js';
import { countCopies, startCluster, submit } from '../support/cluster.js';
import type { Cluster } from '../support/cluster.js';
import { until } from '../support/wait.js';

const LIMITED = 60;
const OTHER = 120;
const RATE = 4; // per second
const BURST = 4;
const JITTER = 2;

function mostIn(transactions: readonly SinkTransaction[], ms: number): number {
  const at = transactions.map((t) => t.startedAt).sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    while ((at[i] ?? 0) - (at[j] ?? 0) > ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

it(`a rate limit of ${RATE}/s burst ${BURST} holds across three nodes, each message delivered once, other destinations unhindered`, { timeout: 120_000 }, async () => {
  const limited = await startFakeSmtp();
  const other = await startFakeSmtp();
  const dir = await mkdtemp(join(tmpdir(), 'postwire-pg-rate-'));
  let cluster: Cluster | undefined;
  try {
    const file = join(dir, 'postwire.toml');
    await writeFile(file, [
      '[[route]]', 'pattern = "limited.test"', `smarthost = "127.0.0.1:${limited.port}"`, `rate = "${RATE}/s"`, `burst = ${BURST}`,
      '[[route]]', 'pattern = "*"', `smarthost = "127.0.0.1:${other.port}"`,
    ].join('\n'));
    cluster = await startCluster(3, ['--config', file, '--delivery', 'on', '--retry', '1s', '--lease-time', '10s', '--log-level', 'warn']);
    const ports = cluster.nodes.map((n) => n?.port ?? 0);
    const rcpt = (n: number): string => (n < LIMITED ? `l${n}@limited.test` : `o${n}@other.test`);
    const first = await submit({ total: LIMITED, lanesPerNode: 2, rcpt, ports: () => ports });
    const then = await submit({ total: OTHER, first: LIMITED, lanesPerNode: 2, rcpt, ports: () => ports });
    assert.equal(first.acked.size + then.acked.size, LIMITED + OTHER, `every message got its 250 (other: ${[...first.other, ...then.other].slice(0, 3).join('; ')})`);
    const wantLimited = LIMITED;
    const wantOther = OTHER;
    const TOTAL = LIMITED + OTHER;
    await until('the other destination is done', () => countCopies(other.delivered).size >= wantOther, 60_000, 50);
    const limitedWhenOtherDone = limited.delivered.length;
    await until('the limited destination is done', () => countCopies(limited.delivered).size >= wantLimited, 60_000, 50);
    await new Promise((r) => setTimeout(r, 500));

    const starts = limited.delivered.map((t) => t.startedAt).sort((a, b) => a - b);
    const span = (starts[starts.length - 1] ?? 0) - (starts[0] ?? 0);
    const perWindow = [500, 1_000, 2_000].map((w) => ({ w, most: mostIn(limited.delivered, w), bound: BURST + Math.floor((RATE * w) / 1_000) + JITTER }));
    console.log(`pg-cluster rate: ${wantLimited} to limited (${RATE}/s burst ${BURST}) from 3 nodes over ${span} ms; most per window ${JSON.stringify(perWindow)}; ` +
      `other (${wantOther}) done with ${limitedWhenOtherDone} of the limited delivered; sink sessions ${limited.sessions}`);
    for (const { w, most, bound } of perWindow) assert.ok(most <= bound, `at most ${bound} deliveries started in ${w} ms cluster-wide (saw ${most})`);
    const needed = ((wantLimited - BURST - JITTER) / RATE) * 1_000;
    assert.ok(span >= needed, `the rate stretched the run to at least ${needed} ms (took ${span})`);
    assert.ok(limitedWhenOtherDone < wantLimited, `the other destination finished first (${limitedWhenOtherDone} limited by then)`);
    const copies = new Map([...countCopies(limited.delivered), ...countCopies(other.delivered)]);
    for (let n = 0; n < TOTAL; n++) assert.equal(copies.get(rcpt(n)), 1, `message ${n} delivered once`);
    assert.equal(limited.delivered.length + other.delivered.length, TOTAL, 'no duplicates');
    assert.deepEqual(await cluster.stop(), [0, 0, 0]);
    cluster.nodes.splice(0);
  } finally {
    await cluster?.destroy();
    await limited.close();
    await other.close();
    await rm(dir, { recursive: true, force: true });
  }
});
