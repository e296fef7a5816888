/**
 * REQUIRETLS (RFC 8689) through the queue: a message whose stored envelope carries
 * `requireTls` (as smtpd sets it for `MAIL FROM … REQUIRETLS`) goes from the store through the
 * queue manager to the agent. To a verified peer that announces REQUIRETLS it is delivered with
 * `MAIL FROM … REQUIRETLS`; to a verified peer that does not, the recipient bounces 5.7.30, the
 * reason is in the history, the sender gets a DSN, and the peer never saw a MAIL for it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import type { QueueId } from '../../src/queue/index.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { allInState } from '../support/submit.js';
import { createTestCa, type TestCa } from '../support/test-ca.js';
import { until } from '../support/wait.js';
import { startFakeSmtp, type FakeSmtpServer } from '../fakes/fake-smtp-server.js';

const BODY = Buffer.from('Subject: sensitive\r\nFrom: alice@src.test\r\n\r\nover TLS or not at all\r\n', 'latin1');

async function enqueueRequireTls(server: TestServer): Promise<QueueId> {
  const w = server.store.createMessage();
  await w.write(BODY);
  const stored = await w.commit({ sender: 'alice@src.test', recipients: [{ address: 'bob@dst.test' }], body: '7BIT', smtputf8: false, requireTls: true, client: { ip: '127.0.0.1', helo: 'client.src.test', protocol: 'ESMTPS' } });
  return stored.id;
}

describe('REQUIRETLS from the queue to the next hop', () => {
  let ca: TestCa;
  const sinks: FakeSmtpServer[] = [];
  const servers: TestServer[] = [];

  before(async () => {
    ca = await createTestCa();
  });
  after(async () => {
    for (const s of servers) await s.stop();
    for (const s of sinks) await s.close();
  });

  async function setUp(extensions: string[]): Promise<{ sink: FakeSmtpServer; server: TestServer }> {
    const sink = await startFakeSmtp({ tls: await ca.issue(['127.0.0.1']), extensions });
    sinks.push(sink);
    const server = await startTestServer(['--delivery', 'on', '--retry', '1h', '--smarthost', `127.0.0.1:${sink.port}`, '--tls-ca-file', ca.caFile]);
    servers.push(server);
    return { sink, server };
  }

  it('a verified peer announcing REQUIRETLS: delivered with MAIL FROM … REQUIRETLS', async () => {
    const { sink, server } = await setUp(['PIPELINING', '8BITMIME', 'REQUIRETLS']);
    const id = await enqueueRequireTls(server);
    assert.deepEqual(await allInState(server, id, 'delivered'), ['delivered']);
    assert.match(sink.delivered[0]?.commands[0] ?? '', /^MAIL FROM:<alice@src\.test>.* REQUIRETLS$/);
    assert.ok(sink.delivered[0]?.tls);
  });

  it('a peer without REQUIRETLS: bounced 5.7.30 with the reason in the history, a DSN to the sender, no MAIL for it', async () => {
    const { sink, server } = await setUp(['PIPELINING', '8BITMIME']);
    const id = await enqueueRequireTls(server);
    assert.deepEqual(await allInState(server, id, 'bounced'), ['bounced']);
    const history = await server.store.history(id);
    const replies = history.flatMap((h) => h.results.map((r) => r.reply ?? ''));
    assert.ok(replies.some((r) => /^550 5\.7\.30 .*REQUIRETLS.*the peer does not offer REQUIRETLS/.test(r)), replies.join(' | '));
    // The DSN (to alice, without REQUIRETLS) is the only MAIL the peer may see.
    await until('the DSN delivered', () => sink.delivered.some((t) => t.mailFrom === '' && t.rcpts.includes('alice@src.test')));
    assert.ok(!sink.transactions.some((t) => t.rcpts.includes('bob@dst.test')), 'no transaction for the REQUIRETLS message');
  });
});
