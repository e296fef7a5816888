/**
 * Interop, Postwire → Postfix: a real Postwire (in-process, `--smarthost` at a private Postfix
 * instance on loopback, see test/support/postfix.ts) accepts messages and delivers them; Postfix
 * (which offers CHUNKING, so Postwire sends BDAT) writes each into a maildir file. Proves that the
 * file holds exactly the bytes Postwire stored: after the four header lines Postfix prepends
 * (Return-Path:, X-Original-To:, Delivered-To:, its Received:) the rest equals the stored body byte for byte, in
 * the LF form Postfix writes every mailbox in (the stored body has no bare CR or LF, so that form
 * maps one to one). Cases: lines '.', '..', '.x' (the founding bug), 8-bit content with
 * BODY=8BITMIME, and a ~1 MiB dot-heavy message; the queue records every recipient `delivered`.
 * Skips with the reason when Postfix is not installed (scripts/ci-deps.sh installs it in CI).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { QueueId } from '../../src/queue/index.js';
import { dotHeavyBody } from '../support/delivery.js';
import { PEER_DOMAIN, postfixUnavailable, startPostfix } from '../support/postfix.js';
import type { PostfixMessage, PostfixPeer } from '../support/postfix.js';
import { readAll, startTestServer } from '../support/server.js';
import { allInState, submit as submitMessage } from '../support/submit.js';
import type { TestServer } from '../support/server.js';

const SKIP = postfixUnavailable();
const SENDER = 'sender@source.test';

/** Submits one message from SENDER; returns its queue id. */
function submit(server: TestServer, rcpt: string, message: Buffer, mailParams = ''): Promise<QueueId> {
  return submitMessage(server, SENDER, [rcpt], message, mailParams);
}

function allDelivered(server: TestServer, id: QueueId, ms = 30_000): Promise<string[]> {
  return allInState(server, id, 'delivered', ms);
}

/** The stored body in the form Postfix writes files in: every CRLF as LF. Asserts that is one to one. */
function unixForm(stored: Buffer): Buffer {
  const text = stored.toString('latin1');
  assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/, 'the stored body has only CRLF line ends');
  return Buffer.from(text.replaceAll('\r\n', '\n'), 'latin1');
}

const CASES: ReadonlyArray<{ name: string; rcpt: string; params: string; message: Buffer }> = [
  {
    name: "lines '.', '..', '.x' (the founding case), and a 'From ' line a mbox would escape",
    rcpt: `dots@${PEER_DOMAIN}`,
    params: '',
    message: Buffer.from(
      'From: a@source.test\r\nTo: dots@postfix-peer.test\r\nSubject: dots\r\nMessage-ID: <dots@source.test>\r\n\r\n' +
        '.\r\n..\r\n.x\r\n...\r\nplain\r\n. space\r\nFrom the start of a line\r\n.\r\n',
      'latin1',
    ),
  },
  {
    name: '8-bit content with BODY=8BITMIME',
    rcpt: `eight@${PEER_DOMAIN}`,
    params: ' BODY=8BITMIME',
    message: Buffer.concat([
      Buffer.from('From: a@source.test\r\nTo: eight@postfix-peer.test\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n', 'latin1'),
      Buffer.from('Grüße, ½ € 日本語\r\n', 'utf8'),
      Buffer.from([...Array.from({ length: 128 }, (_, i) => 0x80 + i), 0x0d, 0x0a]),
      Buffer.from('.é leading dot then 8-bit\r\n', 'utf8'),
    ]),
  },
  {
    name: 'a ~1 MiB dot-heavy message',
    rcpt: `big@${PEER_DOMAIN}`,
    params: '',
    message: dotHeavyBody(1_048_576),
  },
];

describe('interop: Postwire delivers into a real Postfix', { skip: SKIP ?? false }, () => {
  let postfix: PostfixPeer | undefined;
  let server: TestServer | undefined;
  let delivered: PostfixMessage[] = [];
  const ids = new Map<string, QueueId>();

  before(async () => {
    postfix = await startPostfix();
    server = await startTestServer(['--delivery', 'on', '--retry', '300ms', '--max-age', '1h', '--smarthost', `127.0.0.1:${postfix.port}`]);
    for (const c of CASES) ids.set(c.rcpt, await submit(server, c.rcpt, c.message, c.params));
    delivered = await postfix.waitForMessages(CASES.length);
  });
  after(async () => {
    try {
      await server?.stop();
    } finally {
      await postfix?.stop();
    }
  });

  for (const c of CASES) {
    it(`${c.name}: the maildir file holds exactly the stored bytes`, async () => {
      assert.ok(server);
      const id = ids.get(c.rcpt);
      assert.ok(id);
      const file = delivered.find((m) => m.deliveredTo === c.rcpt);
      assert.ok(file, `no file delivered to ${c.rcpt}; files: ${delivered.map((m) => m.deliveredTo).join(', ')}`);
      assert.equal(file.returnPath, SENDER);
      assert.equal(file.originalTo, c.rcpt);
      const stored = await readAll(server.store.readBody(id));
      assert.ok(stored.length >= c.message.length);
      assert.ok(stored.subarray(stored.length - c.message.length).equals(c.message), 'Postwire stored the submitted message');
      const expected = unixForm(stored);
      assert.equal(file.body.length, expected.length, 'same length');
      assert.ok(file.body.equals(expected), 'byte-exact after the four headers Postfix prepends');
      assert.deepEqual(await allDelivered(server, id), ['delivered']);
    });
  }

  it('each message reached Postfix once', async () => {
    assert.ok(postfix);
    // Give a duplicate delivery (a retry after a lost reply) a moment to show up.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual((await postfix.messages()).map((m) => m.deliveredTo).sort(), CASES.map((c) => c.rcpt).sort());
  });
});
