/**
 * Interop, Postfix → Postwire → sink: Postfix is the client. A private Postfix in relay mode
 * (test/support/postfix.ts, `relayhost` = Postwire) takes messages over SMTP from our test client
 * and relays them to a real Postwire (in-process, `--smarthost` at test/fakes/fake-smtp-server.ts),
 * which delivers them on to the sink: Postwire's smtpd reads Postfix's client traffic (pipelined,
 * dot-stuffed by Postfix), and Postwire's delivery carries it on. A recording proxy between Postfix
 * and Postwire keeps Postfix's bytes, so the test sees what was on the wire, not only what arrived.
 *
 * Proves, for lines that begin with a period (a line of only '.' inside the body, '..', '.x', '...'),
 * 8-bit content with BODY=8BITMIME (latin-1 and UTF-8 bytes, every octet 0x80–0xFF), lines of 998
 * octets (plain, dot-first, 8-bit), whitespace-only and empty lines, a message to three recipients,
 * and a message with neither Date: nor Message-ID::
 * - the sink received exactly `Received: (Postwire's) + Received: (Postfix's) + the message as
 *   submitted`, byte for byte, CRLF exactly: the two trace headers are the only change, and each is
 *   the one its relay writes (`by mx.postwire.test`, `by mx.postfix-peer.test (Postfix)`);
 * - Postwire stored exactly those bytes, with Postfix's envelope (sender, every recipient with the
 *   ORCPT Postfix gave it, BODY);
 * - on the wire, Postfix dot-stuffed the message (the DATA payload is the stuffed form of Postfix's
 *   Received: + the message) and pipelined: MAIL FROM, every RCPT TO and DATA in one packet;
 * - the sink got each message once, in one transaction with all its recipients, and the queue
 *   records every recipient `delivered`.
 * Skips with the reason when Postfix is missing; fails instead on CI (test/support/interop.ts).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import type { FakeSmtpServer, SinkTransaction } from '../fakes/fake-smtp-server.js';
import { recordingProxy } from '../support/delivery.js';
import { peerGate } from '../support/interop.js';
import { PEER_HOSTNAME, postfixUnavailable, startPostfix } from '../support/postfix.js';
import type { PostfixPeer } from '../support/postfix.js';
import { startTestServer } from '../support/server.js';
import type { TestServer } from '../support/server.js';
import { allInState, sendMessage } from '../support/submit.js';

const GATE = peerGate('Postfix', postfixUnavailable());
const SENDER = 'sender@source.test';
const DEST = 'relay-dest.test';
const OUR_HOSTNAME = 'mx.postwire.test';

interface Case {
  readonly name: string;
  /** Unique per case: finds the message at the sink, in the store and on the wire. */
  readonly subject: string;
  readonly rcpts: readonly string[];
  readonly params: string;
  readonly message: Buffer;
}

const headers = (subject: string, to: string, extra = ''): string =>
  `From: Sender <${SENDER}>\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Sun, 29 Nov 2026 21:00:00 +0000\r\nMessage-ID: <${subject}@source.test>\r\n${extra}\r\n`;

const CASES: readonly Case[] = [
  {
    name: "lines that begin with a period ('.', '..', '.x', a lone '.' mid-body and last)",
    subject: 'dots',
    rcpts: [`dots@${DEST}`],
    params: '',
    message: Buffer.from(
      headers('dots', `dots@${DEST}`) +
        '.\r\n..\r\n.x\r\n...\r\nplain\r\n. space\r\n.\t.\r\nFrom the start of a line\r\n' +
        'a line before a lone dot\r\n.\r\na line after it\r\n' +
        '..\r\n.\r\n..\r\n' +
        Array.from({ length: 50 }, (_, i) => '.'.repeat(1 + (i % 5)) + (i % 3 === 0 ? '' : `line ${i}`)).join('\r\n') +
        '\r\n.\r\n',
      'latin1',
    ),
  },
  {
    name: '8-bit content with BODY=8BITMIME: latin-1 and UTF-8 bytes, every octet 0x80-0xFF',
    subject: 'eightbit',
    rcpts: [`eight@${DEST}`],
    params: ' BODY=8BITMIME',
    message: Buffer.concat([
      Buffer.from(headers('eightbit', `eight@${DEST}`, 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n'), 'latin1'),
      Buffer.from('Grüße, ½ € 日本語 — UTF-8\r\n', 'utf8'),
      Buffer.from('Gr\xfc\xdfe aus K\xf6ln, latin-1\r\n', 'latin1'),
      Buffer.from([...Array.from({ length: 128 }, (_, i) => 0x80 + i), 0x0d, 0x0a]),
      Buffer.from('.é leading dot then 8-bit\r\n.\r\n\xff\r\n', 'latin1'),
    ]),
  },
  {
    name: 'lines of 998 octets (plain, dot-first, 8-bit), whitespace-only and empty lines',
    subject: 'long',
    rcpts: [`long@${DEST}`],
    params: ' BODY=8BITMIME',
    message: Buffer.concat([
      Buffer.from(headers('long', `long@${DEST}`), 'latin1'),
      Buffer.from(`${'x'.repeat(998)}\r\n.${'y'.repeat(997)}\r\n`, 'latin1'),
      Buffer.alloc(998, 0xe9),
      Buffer.from(`\r\n${'z'.repeat(997)}\r\n\r\n   \r\n\t\r\ntrailing spaces   \r\n\r\n\r\n`, 'latin1'),
    ]),
  },
  {
    name: 'one message to three recipients, without Date: or Message-ID:',
    subject: 'multi',
    rcpts: [`one@${DEST}`, `two@${DEST}`, `three@other-${DEST}`],
    params: '',
    message: Buffer.from(`From: ${SENDER}\r\nTo: one@${DEST}, two@${DEST}\r\nCc: three@other-${DEST}\r\nSubject: multi\r\n\r\nto three\r\n.\r\n`, 'latin1'),
  },
];

/** Removes the first header of `buf` (with its folded lines); asserts it is a Received:. */
function takeReceived(buf: Buffer): { header: string; rest: Buffer } {
  const text = buf.toString('latin1');
  assert.ok(text.startsWith('Received: '), `expected a Received: header, found ${JSON.stringify(text.slice(0, 80))}`);
  let end = text.indexOf('\r\n');
  while (end >= 0 && (text[end + 2] === '\t' || text[end + 2] === ' ')) end = text.indexOf('\r\n', end + 2);
  assert.ok(end >= 0, 'unterminated Received: header');
  return { header: text.slice(0, end + 2), rest: buf.subarray(end + 2) };
}

/** SMTP dot-stuffing, written out here (not Postwire's encoder): a '.' that starts a line doubles. */
function stuffed(message: Buffer): string {
  return message.toString('latin1').replace(/(^|\r\n)\./g, '$1..');
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms: number, onTimeout: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms; ${await onTimeout()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('interop: Postfix relays to Postwire, which delivers to a sink', { skip: GATE.skip }, () => {
  let sink: FakeSmtpServer | undefined;
  let server: TestServer | undefined;
  let proxy: Awaited<ReturnType<typeof recordingProxy>> | undefined;
  let postfix: PostfixPeer | undefined;
  const postfixReplies = new Map<string, string>();

  const delivered = (c: Case): SinkTransaction[] => (sink?.delivered ?? []).filter((t) => t.data.includes(`\r\nSubject: ${c.subject}\r\n`));

  before(async () => {
    sink = await startFakeSmtp();
    server = await startTestServer(['--delivery', 'on', '--retry', '300ms', '--max-age', '1h', '--smarthost', `127.0.0.1:${sink.port}`]);
    proxy = await recordingProxy(server.port);
    postfix = await startPostfix({ relayTo: { host: '127.0.0.1', port: proxy.port } });
    for (const c of CASES) postfixReplies.set(c.subject, await sendMessage(postfix.port, SENDER, c.rcpts, c.message, c.params));
    const pf = postfix;
    await waitFor(
      `the sink did not get all ${CASES.length} messages`,
      () => (CASES.every((c) => delivered(c).length > 0) ? true : undefined),
      60_000,
      async () => `the sink has ${sink?.delivered.length ?? 0}; Postfix's log:\n${await pf.log()}`,
    );
  });
  after(async () => {
    try {
      await postfix?.stop();
    } finally {
      try {
        await proxy?.close();
        await server?.stop();
      } finally {
        await sink?.close();
      }
    }
  });

  for (const c of CASES) {
    it(`${c.name}: arrives byte-exact, with only the two Received: headers added`, async () => {
      assert.ok(server && sink && proxy);
      assert.match(postfixReplies.get(c.subject) ?? '', /queued as/, 'Postfix queued the submission');

      // At the sink: exactly our Received:, then Postfix's, then the message as submitted.
      const [arrival] = delivered(c);
      assert.ok(arrival);
      const ours = takeReceived(arrival.data);
      assert.match(ours.header, new RegExp(`^Received: from ${PEER_HOSTNAME.replaceAll('.', '\\.')} `), 'our Received: names Postfix as the client');
      assert.match(ours.header, new RegExp(`\\bby ${OUR_HOSTNAME.replaceAll('.', '\\.')}\\b`));
      const theirs = takeReceived(ours.rest);
      assert.match(theirs.header, new RegExp(`\\bby ${PEER_HOSTNAME.replaceAll('.', '\\.')} \\(Postfix\\)`));
      assert.equal(theirs.rest.length, c.message.length, 'same length as submitted');
      assert.ok(theirs.rest.equals(c.message), 'byte-exact after the two trace headers');
      assert.equal(arrival.mailFrom, SENDER);
      assert.deepEqual([...arrival.rcpts].sort(), [...c.rcpts].sort());
      if (c.params.includes('BODY=8BITMIME')) assert.ok(arrival.commands.some((l) => l.startsWith('MAIL FROM:') && l.includes('BODY=8BITMIME')), arrival.commands.join(' | '));

      // In Postwire's queue: the same bytes, Postfix's envelope, every recipient delivered.
      const stored = (await server.messages()).filter((m) => m.body.includes(`\r\nSubject: ${c.subject}\r\n`));
      assert.equal(stored.length, 1, 'Postfix relayed it to Postwire once');
      const [message] = stored;
      assert.ok(message);
      assert.ok(message.body.equals(arrival.data), 'the sink got exactly what Postwire stored');
      assert.equal(message.envelope.sender, SENDER);
      assert.deepEqual(message.recipients.map((r) => r.address).sort(), [...c.rcpts].sort());
      // Postfix sends ORCPT=rfc822;<rcpt> to a server that offers DSN; Postwire keeps it.
      for (const r of message.recipients) assert.equal(r.orcpt, `rfc822;${r.address}`);
      assert.equal(message.envelope.body, c.params.includes('BODY=8BITMIME') ? '8BITMIME' : '7BIT', 'Postfix passed BODY= on');
      assert.deepEqual(await allInState(server, message.id, 'delivered'), c.rcpts.map(() => 'delivered'));

      // On the wire from Postfix: dot-stuffed DATA, and MAIL, RCPT… and DATA pipelined in one packet.
      const marker = `\r\nSubject: ${c.subject}\r\n`;
      const conversations = proxy.perConnection().map((packets) => ({ packets, text: Buffer.concat(packets).toString('latin1') }));
      const conversation = conversations.find((x) => x.text.includes(marker));
      assert.ok(conversation, 'the proxy saw the message');
      const at = conversation.text.indexOf(marker);
      const dataAt = conversation.text.lastIndexOf('\r\nDATA\r\n', at);
      const mailAt = conversation.text.lastIndexOf('MAIL FROM:', dataAt);
      assert.ok(dataAt > 0 && mailAt >= 0, 'DATA, not BDAT');
      const end = conversation.text.indexOf('\r\n.\r\n', at);
      const payload = conversation.text.slice(dataAt + '\r\nDATA\r\n'.length, end + '\r\n.\r\n'.length);
      assert.equal(payload, `${stuffed(ours.rest)}.\r\n`, 'Postfix sent the dot-stuffed message');
      const commands = conversation.text.slice(mailAt, dataAt + '\r\nDATA\r\n'.length);
      assert.equal(commands.match(/^RCPT TO:/gm)?.length, c.rcpts.length);
      assert.ok(
        conversation.packets.some((p) => p.toString('latin1') === commands),
        `MAIL FROM, ${c.rcpts.length} RCPT TO and DATA in one packet (PIPELINING); the commands were:\n${commands}`,
      );
    });
  }

  it('each message reached the sink once, in one transaction with all its recipients', async () => {
    assert.ok(sink);
    await new Promise((r) => setTimeout(r, 500));
    for (const c of CASES) assert.equal(delivered(c).length, 1, c.subject);
    assert.equal(sink.delivered.length, CASES.length);
  });
});
