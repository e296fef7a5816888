/**
 * Interop, Postwire → Python's aiosmtpd: a real Postwire (in-process, `--smarthost` at the sink in
 * test/support/aiosmtpd-sink.py, run with /usr/bin/python3) delivers to a server that offers
 * neither PIPELINING nor CHUNKING, so this is the DATA path with dot-stuffing done by Postwire and
 * un-stuffing by an independent implementation. Proves that aiosmtpd's `envelope.original_content`
 * equals the body Postwire stored, byte for byte (CRLF included, nothing to normalise), for lines
 * '.', '..', '.x', 8-bit content with BODY=8BITMIME (passed on), a ~1 MiB dot-heavy message, and a
 * UTF-8 recipient delivered with SMTPUTF8 to a peer that offers it; the queue records each
 * recipient `delivered`, and each message arrives once.
 * Skips with the reason when python3-aiosmtpd is not installed (scripts/ci-deps.sh installs it in CI).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { QueueId } from '../../src/queue/index.js';
import { aiosmtpdUnavailable, startAiosmtpd } from '../support/aiosmtpd.js';
import type { AiosmtpdMessage, AiosmtpdPeer } from '../support/aiosmtpd.js';
import { dotHeavyBody } from '../support/delivery.js';
import { readAll, startTestServer } from '../support/server.js';
import { allInState, submit as submitMessage } from '../support/submit.js';
import type { TestServer } from '../support/server.js';

const SKIP = aiosmtpdUnavailable();
const SENDER = 'sender@source.test';
const DOMAIN = 'aiosmtpd-peer.test';

/** Submits one message from SENDER; returns its queue id. */
function submit(server: TestServer, rcpt: string, message: Buffer, mailParams = ''): Promise<QueueId> {
  return submitMessage(server, SENDER, [rcpt], message, mailParams);
}

function allDelivered(server: TestServer, id: QueueId, ms = 30_000): Promise<string[]> {
  return allInState(server, id, 'delivered', ms);
}

interface Case {
  readonly name: string;
  readonly rcpt: string;
  readonly params: string;
  readonly message: Buffer;
  /** MAIL FROM parameters the peer must have seen. */
  readonly mailOptions: readonly string[];
}

const CASES: readonly Case[] = [
  {
    name: "lines '.', '..', '.x' (the founding case)",
    rcpt: `dots@${DOMAIN}`,
    params: '',
    mailOptions: [],
    message: Buffer.from(
      `From: a@source.test\r\nTo: dots@${DOMAIN}\r\nSubject: dots\r\n\r\n.\r\n..\r\n.x\r\n...\r\nplain\r\n. space\r\nFrom the start of a line\r\n.\r\n`,
      'latin1',
    ),
  },
  {
    name: '8-bit content with BODY=8BITMIME',
    rcpt: `eight@${DOMAIN}`,
    params: ' BODY=8BITMIME',
    mailOptions: ['BODY=8BITMIME'],
    message: Buffer.concat([
      Buffer.from(`From: a@source.test\r\nTo: eight@${DOMAIN}\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`, 'latin1'),
      Buffer.from('Grüße, ½ € 日本語\r\n', 'utf8'),
      Buffer.from([...Array.from({ length: 128 }, (_, i) => 0x80 + i), 0x0d, 0x0a]),
      Buffer.from('.é leading dot then 8-bit\r\n', 'utf8'),
    ]),
  },
  {
    name: 'a ~1 MiB dot-heavy message',
    rcpt: `big@${DOMAIN}`,
    params: '',
    mailOptions: [],
    message: dotHeavyBody(1_048_576),
  },
  {
    name: 'a UTF-8 recipient with SMTPUTF8',
    rcpt: `jörg.müller@${DOMAIN}`,
    params: ' SMTPUTF8 BODY=8BITMIME',
    mailOptions: ['SMTPUTF8', 'BODY=8BITMIME'],
    message: Buffer.from(`From: a@source.test\r\nTo: Jörg <jörg.müller@${DOMAIN}>\r\nSubject: Grüße\r\n\r\n.für dich\r\n`, 'utf8'),
  },
];

describe('interop: Postwire delivers into Python aiosmtpd', { skip: SKIP ?? false }, () => {
  let sink: AiosmtpdPeer | undefined;
  let server: TestServer | undefined;
  let received: AiosmtpdMessage[] = [];
  const ids = new Map<string, QueueId>();

  before(async () => {
    sink = await startAiosmtpd();
    server = await startTestServer(['--delivery', 'on', '--retry', '300ms', '--max-age', '1h', '--smarthost', `127.0.0.1:${sink.port}`]);
    for (const c of CASES) ids.set(c.rcpt, await submit(server, c.rcpt, c.message, c.params));
    received = await sink.waitForMessages(CASES.length);
  });
  after(async () => {
    try {
      await server?.stop();
    } finally {
      await sink?.stop();
    }
  });

  for (const c of CASES) {
    it(`${c.name}: original_content is exactly the stored bytes`, async () => {
      assert.ok(server);
      const id = ids.get(c.rcpt);
      assert.ok(id);
      const got = received.find((m) => m.rcptTos.includes(c.rcpt));
      assert.ok(got, `nothing received for ${c.rcpt}; got ${received.map((m) => m.rcptTos.join(',')).join(' | ')}`);
      assert.deepEqual(got.rcptTos, [c.rcpt]);
      assert.equal(got.mailFrom, SENDER);
      for (const option of c.mailOptions) assert.ok(got.mailOptions.includes(option), `MAIL FROM carried ${option}: ${got.mailOptions.join(' ')}`);
      if (c.mailOptions.includes('SMTPUTF8')) assert.equal(got.smtpUtf8, true);
      const stored = await readAll(server.store.readBody(id));
      assert.ok(stored.subarray(stored.length - c.message.length).equals(c.message), 'Postwire stored the submitted message');
      assert.equal(got.data.length, stored.length, 'same length');
      assert.ok(got.data.equals(stored), 'byte-exact');
      assert.deepEqual(await allDelivered(server, id), ['delivered']);
    });
  }

  it('each message reached aiosmtpd once', async () => {
    assert.ok(sink);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual((await sink.messages()).flatMap((m) => m.rcptTos).sort(), CASES.map((c) => c.rcpt).sort());
  });
});
