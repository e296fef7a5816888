/**
 * Per-destination outbound rate limits on one node (the embedded queue), through the real
 * server in-process with a TOML config: three routes to three sinks: `stuck.test` at one a
 * minute (burst 1), `limited.test` at RATE per second with BURST, everything else unlimited. The
 * stuck mail goes in first, then the limited, then the other.
 *
 * 1. The limited destination starts its deliveries at the rate: in any window of W ms the sink
 *    sees at most BURST + RATE × W (plus JITTER deliveries for the time between our token and
 *    the sink's MAIL FROM), and the whole run takes at least the time the rate needs; every
 *    message is delivered once, with one attempt in its history (waiting for a token is not an
 *    attempt). The stuck destination's backlog holds nothing else back: the limited and the
 *    unlimited mail behind it are all delivered while it has started one delivery a minute, and
 *    its waiting messages are `queued` with an empty history (no attempt, no deferral). explain
 *    shows the limit and its bucket; the metrics count the waits per destination.
 * 2. SIGHUP's reload: --destination-rate set on a running server applies to the next claims.
 * Only lower bounds on time are asserted (a loaded machine only slows delivery down).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import type { FakeSmtpServer } from '../fakes/fake-smtp-server.js';
import { startTestServer, testConfig } from '../support/server.js';
import type { TestServer } from '../support/server.js';
import { sendMessage } from '../support/submit.js';
import { until } from '../support/wait.js';
import { mostIn, writeRateRoutes } from '../support/rate.js';
import { loadConfig } from '../../src/config/index.js';
import { parseQueueId } from '../../src/queue/index.js';
import { explainPage } from '../../src/cli/format.js';

const RATE = 4; // per second
const BURST = 3;
const LIMITED = 30;
const OTHER = 60;
const STUCK = 12;
const JITTER = 2;

async function sendAll(port: number, rcpts: readonly string[], lanes = 4): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: lanes }, async () => {
    for (let n = next++; n < rcpts.length; n = next++) {
      const text = await sendMessage(port, 'src@source.test', [rcpts[n] ?? ''], `Subject: ${n}\r\n\r\nrate test ${n}\r\n`);
      ids.push(/queued as (\S+)/.exec(text)?.[1] ?? '');
    }
  }));
  return ids;
}

describe('outbound rate limits, one node', () => {
  it('a limited destination delivers its burst, then at the rate; other destinations are not held back', { timeout: 90_000 }, async () => {
    const stuck = await startFakeSmtp();
    const limited = await startFakeSmtp();
    const other = await startFakeSmtp();
    const dir = await mkdtemp(join(tmpdir(), 'postwire-rate-'));
    let server: TestServer | undefined;
    try {
      const file = await writeRateRoutes(dir, { stuck: stuck.port, limited: limited.port, other: other.port }, RATE, BURST);
      server = await startTestServer(['--config', file, '--delivery', 'on', '--admin', '127.0.0.1:0', '--retry', '1s']);
      // The limited mail before the other: then the limit (not the submission, a few dozen a
      // second on a loaded machine) sets its pace.
      const stuckIds = await sendAll(server.port, Array.from({ length: STUCK }, (_, n) => `s${n}@stuck.test`));
      const ids = [
        ...await sendAll(server.port, Array.from({ length: LIMITED }, (_, n) => `l${n}@limited.test`)),
        ...await sendAll(server.port, Array.from({ length: OTHER }, (_, n) => `o${n}@other.test`)),
      ];
      await until('the other destination is done', () => other.delivered.length >= OTHER, 60_000, 20);
      const limitedWhenOtherDone = limited.delivered.length;
      await until('the limited destination is done', () => limited.delivered.length >= LIMITED, 60_000, 50);
      await new Promise((r) => setTimeout(r, 300));
      const stuckStarted = stuck.delivered[0]?.startedAt ?? Date.now();
      const stuckBound = 1 + Math.floor((Date.now() - stuckStarted) / 60_000);
      assert.ok(stuck.delivered.length >= 1 && stuck.delivered.length <= stuckBound, `one a minute to the stuck destination (${stuck.delivered.length}, at most ${stuckBound})`);
      let queued = 0;
      for (const text of stuckIds) {
        const id = parseQueueId(text);
        assert.ok(id);
        const message = await server.store.getMessage(id);
        if (message?.recipients[0]?.state !== 'queued') continue;
        queued++;
        assert.deepEqual(await server.store.history(id), [], `${id} waits for a token: no attempt, no deferral in its history`);
      }
      assert.ok(queued >= STUCK - stuckBound, `${queued} stuck messages still queued, untried`);

      const starts = limited.delivered.map((t) => t.startedAt).sort((a, b) => a - b);
      const span = (starts[starts.length - 1] ?? 0) - (starts[0] ?? 0);
      const perWindow = [500, 1_000, 2_000].map((w) => ({ w, most: mostIn(limited.delivered, w), bound: BURST + Math.floor((RATE * w) / 1_000) + JITTER }));
      console.log(`rate-limit: ${LIMITED} to limited (${RATE}/s burst ${BURST}) over ${span} ms; most per window ${JSON.stringify(perWindow)}; ` +
        `other (${OTHER}) done with ${limitedWhenOtherDone} of the limited delivered; stuck (1/m) ${stuck.delivered.length} of ${STUCK} delivered`);
      for (const { w, most, bound } of perWindow) assert.ok(most <= bound, `at most ${bound} deliveries started in ${w} ms (saw ${most})`);
      const needed = ((LIMITED - BURST - JITTER) / RATE) * 1_000;
      assert.ok(span >= needed, `the rate stretched the run to at least ${needed} ms (took ${span})`);
      assert.equal(new Set(limited.delivered.map((t) => t.rcpts[0])).size, LIMITED, 'each limited recipient once');
      assert.equal(limited.delivered.length, LIMITED, 'no duplicates');
      assert.equal(new Set(other.delivered.map((t) => t.rcpts[0])).size, OTHER);

      // Waiting for a token is not an attempt: one history entry per message, delivered.
      for (const text of ids) {
        const id = parseQueueId(text);
        assert.ok(id);
        const history = await server.store.history(id);
        assert.equal(history.length, 1, `${id}: one attempt, not ${history.length}`);
      }

      const explained = await server.server.api.explain({ target: 'x@limited.test' });
      const rate = explained.destinations[0]?.rate;
      assert.ok(rate, 'explain shows the rate');
      assert.deepEqual({ perMinute: rate.perMinute, burst: rate.burst, source: rate.source, waiting: rate.waiting }, { perMinute: RATE * 60, burst: BURST, source: 'route', waiting: 0 });
      assert.ok(rate.tokens !== undefined && rate.tokens >= 0 && rate.tokens <= BURST);
      assert.equal((await server.server.api.explain({ target: 'x@other.test' })).destinations[0]?.rate, undefined, 'no limit, no rate');
      assert.match(explainPage(explained), new RegExp(`rate     ${RATE}/s burst ${BURST} \\(the route\\): \\d may start now, 0 waiting for a token`), 'postwire explain prints it');

      const metrics = await (await fetch(`http://127.0.0.1:${server.server.admin?.port ?? 0}/metrics`)).text();
      const waits = new RegExp(`postwire_destination_rate_waits_total\\{destination="smarthost:127\\.0\\.0\\.1:${limited.port}"\\} (\\d+)`).exec(metrics);
      assert.ok(waits && Number(waits[1]) >= LIMITED - BURST - JITTER, `rate waits counted for the limited destination: ${waits?.[0]}`);
      assert.doesNotMatch(metrics, new RegExp(`postwire_destination_rate_waits_total\\{destination="smarthost:127\\.0\\.0\\.1:${other.port}"`));
    } finally {
      await server?.stop();
      await stuck.close();
      await limited.close();
      await other.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('SIGHUP: a --destination-rate set on a running server limits the next deliveries', { timeout: 60_000 }, async () => {
    let sink: FakeSmtpServer | undefined;
    let server: TestServer | undefined;
    try {
      sink = await startFakeSmtp();
      const flags = ['--smarthost', `127.0.0.1:${sink.port}`, '--delivery', 'on', '--retry', '1s'];
      server = await startTestServer(flags);
      await sendAll(server.port, ['a0@dest.test', 'a1@dest.test', 'a2@dest.test']);
      const s = sink;
      await until('unlimited: all three delivered', () => s.delivered.length >= 3, 20_000, 20);
      const reloaded = server.server.reload(loadConfig({ argv: testFlags(server.spool, [...flags, '--destination-rate', '1/m']), env: {}, hostname: 'mx.postwire.test' }));
      assert.ok(reloaded.ok && reloaded.live.includes('destination-rate'), JSON.stringify(reloaded));
      await sendAll(server.port, ['b0@dest.test', 'b1@dest.test', 'b2@dest.test'], 1);
      await until('the first under the new limit', () => s.delivered.length >= 4, 20_000, 20);
      await new Promise((r) => setTimeout(r, 2_500));
      assert.equal(s.delivered.length, 4, 'one a minute (burst 1): the other two wait');
      const explained = await server.server.api.explain({ target: 'b0@dest.test' });
      assert.equal(explained.destinations[0]?.rate?.source, 'default');
      assert.equal(explained.destinations[0]?.rate?.perMinute, 1);
    } finally {
      await server?.stop();
      await sink?.close();
    }
  });
});

/** The argv testConfig builds for these flags (so the reload sees what the start saw, plus the change). */
function testFlags(spool: string, flags: readonly string[]): string[] {
  testConfig(spool, flags); // throws on a bad flag, as the start would
  return ['--listen', '127.0.0.1:0', '--spool', spool, '--hostname', 'mx.postwire.test', '--shutdown-grace', '2s', ...flags, '--admin', 'off'];
}
