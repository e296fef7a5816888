/**
 * A known workload through a real Postwire (in-process, the composition root `postwire serve`
 * uses, configured by a TOML file with two routes to two sinks), then GET /metrics over HTTP
 * with the exact counts asserted, and the JSON log compared with the store's history: every
 * attempt record appears in the log, field for field.
 *
 * The workload: two recipients delivered; one rejected (550, bounced, so a DSN is queued and
 * delivered to the sender); one deferred (451 after end-of-data) on a second destination. The
 * retry delay is an hour, so nothing is attempted twice while the test looks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { RawClient } from '../support/raw-client.js';
import { testConfig } from '../support/server.js';
import { until } from '../support/wait.js';
import { startServer } from '../../src/main.js';
import { createLogger } from '../../src/obs/index.js';
import type { QueueId } from '../../src/queue/index.js';

/** A submission that counts every octet it writes (the server's bytes-in must match). */
async function submit(port: number, from: string, to: readonly string[], body: string, sent: { octets: number }): Promise<QueueId> {
  const c = await RawClient.connect(port);
  const say = async (line: string): Promise<string> => {
    sent.octets += Buffer.byteLength(line);
    await c.write(line);
    const r = await c.reply();
    return `${r.code} ${r.text}`;
  };
  try {
    await c.reply();
    await say('EHLO client.test\r\n');
    await say(`MAIL FROM:<${from}>\r\n`);
    for (const r of to) assert.match(await say(`RCPT TO:<${r}>\r\n`), /^250/);
    await say('DATA\r\n');
    const reply = await say(`${body}.\r\n`);
    assert.match(reply, /^250/);
    await say('QUIT\r\n');
    return /queued as (\S+)/.exec(reply)?.[1] as QueueId;
  } finally {
    c.close();
  }
}

describe('observability', () => {
  it('GET /metrics after a known workload shows the exact counts, and the log tells the history', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-obs-'));
    const main = await startFakeSmtp();
    const other = await startFakeSmtp();
    const lines: Record<string, unknown>[] = [];
    let partial = '';
    const capture = new Writable({
      write(chunk: Buffer, _e, done) {
        const parts = (partial + chunk.toString()).split('\n');
        partial = parts.pop() ?? '';
        for (const p of parts) lines.push(JSON.parse(p) as Record<string, unknown>);
        done();
      },
    });
    const file = join(dir, 'postwire.toml');
    await writeFile(file, [
      'metrics-destinations = 1',
      'retry = "1h"',
      '[[route]]',
      'pattern = "other.test"',
      `smarthost = "127.0.0.1:${other.port}"`,
      '[[route]]',
      'pattern = "*"',
      `smarthost = "127.0.0.1:${main.port}"`,
    ].join('\n'));
    const config = testConfig(join(dir, 'spool'), ['--config', file, '--delivery', 'on', '--admin', '127.0.0.1:0', '--max-age', '2h']);
    const server = await startServer(config, { log: createLogger({ level: 'info', format: 'json', destination: capture }) });
    const port = server.listeners[0]?.port ?? 0;
    try {
      const sent = { octets: 0 };
      const two = await submit(port, 's@src.test', ['ok-1@dest.test', 'ok-2@dest.test'], 'Subject: two\r\n\r\n..dot line\r\n', sent);
      const rejected = await submit(port, 's@src.test', ['reject-3@dest.test'], 'Subject: no\r\n\r\nx\r\n', sent);
      const deferred = await submit(port, 's@src.test', ['always-451-4@other.test'], 'Subject: later\r\n\r\nx\r\n', sent);
      const state = async (id: QueueId): Promise<string> => (await server.store.getMessage(id))?.recipients.map((r) => r.state).join(',') ?? '';
      await until('the workload settles', async () =>
        (await state(two)) === 'delivered,delivered' && (await state(rejected)) === 'bounced' && (await state(deferred)) === 'deferred' &&
        main.delivered.some((t) => t.rcpts.includes('s@src.test')) ? true : undefined);
      const dsn = (await server.store.listMessages({ limit: 100 })).find((m) => m.envelope.sender === '');
      assert.ok(dsn, 'the DSN is queued');
      await until('the DSN recorded delivered', async () => ((await state(dsn.id)) === 'delivered' ? true : undefined));

      const text = await (await fetch(`http://127.0.0.1:${server.admin?.port ?? 0}/metrics`)).text();
      const value = (series: string): number => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      const size = async (id: QueueId): Promise<number> => (await server.store.getMessage(id))?.size ?? NaN;
      const mainDest = `smarthost:127.0.0.1:${main.port}`;

      assert.equal(value('postwire_messages_accepted_total'), 4, 'three submitted and one DSN');
      assert.equal(value('postwire_accepted_bytes_total'), (await size(two)) + (await size(rejected)) + (await size(deferred)) + (await size(dsn.id)));
      assert.equal(value('postwire_recipients_total{state="delivered"}'), 3, 'two recipients and the DSN');
      assert.equal(value('postwire_recipients_total{state="bounced"}'), 1);
      assert.equal(value('postwire_recipients_total{state="deferred"}'), 1);
      assert.ok(Number.isNaN(value('postwire_recipients_total{state="expired"}')), 'nothing expired');
      assert.equal(value('postwire_ambiguous_total'), 0);
      assert.equal(value('postwire_framing_faults_total'), 0);
      assert.equal(value('postwire_delivery_latency_seconds_count'), 3);
      assert.equal(value('postwire_queue_recipients{state="delivered"}'), 3);
      assert.equal(value('postwire_queue_recipients{state="bounced"}'), 1);
      assert.equal(value('postwire_queue_recipients{state="deferred"}'), 1);
      assert.ok(value('postwire_oldest_message_age_seconds') > 0, 'the deferred message is waiting');
      await until('sessions closed', async () => {
        const t = await (await fetch(`http://127.0.0.1:${server.admin?.port ?? 0}/metrics`)).text();
        return /^postwire_smtpd_sessions 0$/m.test(t) ? true : undefined;
      });
      assert.equal(value('postwire_smtpd_received_bytes_total'), sent.octets, 'every octet the client wrote');
      // Bodies went out for the two-recipient message, the DSN and the deferred one (451 after
      // end-of-data); the rejected one never reached DATA.
      assert.equal(value('postwire_delivery_sent_bytes_total'), (await size(two)) + (await size(dsn.id)) + (await size(deferred)));
      // --metrics-destinations 1: the busier destination by name, the other one as "other".
      assert.equal(value(`postwire_destination_recipients_total{destination="${mainDest}",state="delivered"}`), 3);
      assert.equal(value(`postwire_destination_recipients_total{destination="${mainDest}",state="bounced"}`), 1);
      assert.equal(value('postwire_destination_recipients_total{destination="other",state="deferred"}'), 1);
      assert.equal((text.match(/^postwire_destination_recipients_total\{/gm) ?? []).length, 3, 'no other series');

      // The log and the history tell the same events: each attempt record is in the log.
      const attempts = lines.filter((l) => l['msg'] === 'attempt');
      for (const id of [two, rejected, deferred, dsn.id]) {
        const message = await server.store.getMessage(id);
        for (const record of await server.store.history(id)) {
          for (const r of record.results) {
            const line = attempts.find((l) => l['queueId'] === id && l['at'] === record.at && l['recipient'] === r.recipient);
            assert.ok(line, `attempt ${id}/${r.recipient} at ${record.at} is logged`);
            assert.equal(line['nextHop'], record.nextHop);
            assert.equal(line['state'], r.state);
            assert.equal(line['reply'], r.reply);
            assert.equal(line['rcpt'], message?.recipients[r.recipient]?.address);
            assert.equal(line['nextAttemptAt'], record.nextAttemptAt);
            assert.equal(line['note'], record.note);
          }
        }
      }
      assert.equal(attempts.length, 5, 'one line per recipient attempt');
      const queued = lines.filter((l) => l['msg'] === 'queued');
      assert.equal(queued.length, 4);
      assert.ok(queued.filter((l) => l['queueId'] !== dsn.id).every((l) => typeof l['session'] === 'string' && l['session'] !== ''), 'accepted mail names its session');
    } finally {
      await server.close('test over');
      await main.close();
      await other.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
