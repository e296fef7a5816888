/**
 * Interop, Postwire → a real next hop, one suite run against each peer:
 *
 * - **Postfix** (a private instance on loopback, test/support/postfix.ts): it offers CHUNKING, so
 *   Postwire sends BDAT; virtual(8) writes each message into a maildir file, in the LF form of every
 *   Postfix mailbox, after four headers of its own (Return-Path:, X-Original-To:, Delivered-To:,
 *   its Received:). The file must equal the stored body with CRLF → LF (asserted one to one: the
 *   stored body has no bare CR or LF), and Return-Path / X-Original-To / Delivered-To must be the
 *   envelope Postwire sent.
 * - **Python's aiosmtpd** (test/support/aiosmtpd-sink.py under /usr/bin/python3): it offers neither
 *   PIPELINING nor CHUNKING, so this is the DATA path, dot-stuffed by Postwire and un-stuffed by an
 *   independent implementation. `envelope.original_content` must equal the stored body byte for
 *   byte, CRLF included; MAIL FROM must carry the parameters the submission had (BODY=8BITMIME,
 *   SMTPUTF8) and the envelope must be exactly the one recipient.
 *
 * Cases, for both: lines '.', '..', '.x' (the founding bug) and a 'From ' line a mbox would escape;
 * 8-bit content with BODY=8BITMIME; a ~1 MiB dot-heavy message; a UTF-8 recipient with SMTPUTF8.
 * For each: Postwire stored exactly what was submitted, the peer holds exactly the stored bytes,
 * the queue records the recipient `delivered`; and every message reached the peer once.
 * Each peer's suite skips with the reason when the peer is missing, and fails instead on CI
 * (test/support/interop.ts; scripts/ci-deps.sh installs both).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { QueueId } from '../../src/queue/index.js';
import { aiosmtpdUnavailable, startAiosmtpd } from '../support/aiosmtpd.js';
import { dotHeavyBody } from '../support/delivery.js';
import { peerGate } from '../support/interop.js';
import { PEER_DOMAIN, PEER_HOSTNAME, postfixUnavailable, startPostfix } from '../support/postfix.js';
import { createTestCa } from '../support/test-ca.js';
import { readAll, startTestServer } from '../support/server.js';
import { allInState, submit } from '../support/submit.js';
import type { TestServer } from '../support/server.js';

const SENDER = 'sender@source.test';

/** One message as a peer holds it, in the peer's own terms. */
interface Arrival {
  /** The envelope recipients the peer saw (Postfix: the one in Delivered-To:). */
  readonly rcpts: readonly string[];
  readonly sender: string;
  /** The message as the peer stored it, without anything the peer itself added. */
  readonly data: Buffer;
  /** Postfix's X-Original-To: (the RCPT TO address as Postwire gave it). */
  readonly originalTo?: string;
  /** aiosmtpd's MAIL FROM parameters and SMTPUTF8 flag (Postfix's maildir does not record them). */
  readonly mailOptions?: readonly string[];
  readonly smtpUtf8?: boolean;
}

interface RunningPeer {
  readonly port: number;
  arrivals(): Promise<Arrival[]>;
  waitFor(n: number): Promise<Arrival[]>;
  stop(): Promise<void>;
}

interface Peer {
  readonly name: string;
  /** The domain it accepts mail for. */
  readonly domain: string;
  /** Where the message ends up, for test names. */
  readonly holder: string;
  readonly gate: { readonly skip: string | false };
  start(): Promise<RunningPeer>;
  /** The stored body in the form this peer writes it. */
  form(stored: Buffer): Buffer;
}

/** The stored body in the form Postfix writes files in: every CRLF as LF. Asserts that is one to one. */
function unixForm(stored: Buffer): Buffer {
  const text = stored.toString('latin1');
  assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/, 'the stored body has only CRLF line ends');
  return Buffer.from(text.replaceAll('\r\n', '\n'), 'latin1');
}

/** A header value Postfix wrote as raw bytes (UTF-8 addresses), read back as text. */
const utf8 = (latin1: string): string => Buffer.from(latin1, 'latin1').toString('utf8');

const PEERS: readonly Peer[] = [
  {
    name: 'a real Postfix',
    domain: PEER_DOMAIN,
    holder: 'the maildir file',
    gate: peerGate('Postfix', postfixUnavailable()),
    async start() {
      const postfix = await startPostfix();
      const arrivals = (list: Awaited<ReturnType<typeof postfix.messages>>): Arrival[] =>
        list.map((m) => ({ rcpts: [utf8(m.deliveredTo)], sender: utf8(m.returnPath), originalTo: utf8(m.originalTo), data: m.body }));
      return {
        port: postfix.port,
        arrivals: async () => arrivals(await postfix.messages()),
        waitFor: async (n) => arrivals(await postfix.waitForMessages(n)),
        stop: () => postfix.stop(),
      };
    },
    form: unixForm,
  },
  {
    name: 'Python aiosmtpd',
    domain: 'aiosmtpd-peer.test',
    holder: 'original_content',
    gate: peerGate('aiosmtpd', aiosmtpdUnavailable()),
    async start() {
      const sink = await startAiosmtpd();
      const arrivals = (list: Awaited<ReturnType<typeof sink.messages>>): Arrival[] =>
        list.map((m) => ({ rcpts: m.rcptTos, sender: m.mailFrom, mailOptions: m.mailOptions, smtpUtf8: m.smtpUtf8, data: m.data }));
      return {
        port: sink.port,
        arrivals: async () => arrivals(await sink.messages()),
        waitFor: async (n) => arrivals(await sink.waitForMessages(n)),
        stop: () => sink.stop(),
      };
    },
    form: (stored) => stored,
  },
];

interface Case {
  readonly name: string;
  readonly rcpt: string;
  readonly params: string;
  readonly message: Buffer;
  /** MAIL FROM parameters the peer must have seen (where it records them). */
  readonly mailOptions: readonly string[];
}

function cases(domain: string): Case[] {
  return [
    {
      name: "lines '.', '..', '.x' (the founding case), and a 'From ' line a mbox would escape",
      rcpt: `dots@${domain}`,
      params: '',
      mailOptions: [],
      message: Buffer.from(
        `From: a@source.test\r\nTo: dots@${domain}\r\nSubject: dots\r\nMessage-ID: <dots@source.test>\r\n\r\n` +
          '.\r\n..\r\n.x\r\n...\r\nplain\r\n. space\r\nFrom the start of a line\r\n.\r\n',
        'latin1',
      ),
    },
    {
      name: '8-bit content with BODY=8BITMIME',
      rcpt: `eight@${domain}`,
      params: ' BODY=8BITMIME',
      mailOptions: ['BODY=8BITMIME'],
      message: Buffer.concat([
        Buffer.from(
          `From: a@source.test\r\nTo: eight@${domain}\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`,
          'latin1',
        ),
        Buffer.from('Grüße, ½ € 日本語\r\n', 'utf8'),
        Buffer.from([...Array.from({ length: 128 }, (_, i) => 0x80 + i), 0x0d, 0x0a]),
        Buffer.from('.é leading dot then 8-bit\r\n', 'utf8'),
      ]),
    },
    {
      name: 'a ~1 MiB dot-heavy message',
      rcpt: `big@${domain}`,
      params: '',
      mailOptions: [],
      message: dotHeavyBody(1_048_576),
    },
    {
      name: 'a UTF-8 recipient with SMTPUTF8',
      rcpt: `jörg.müller@${domain}`,
      params: ' SMTPUTF8 BODY=8BITMIME',
      mailOptions: ['SMTPUTF8', 'BODY=8BITMIME'],
      message: Buffer.from(`From: a@source.test\r\nTo: Jörg <jörg.müller@${domain}>\r\nSubject: Grüße\r\n\r\n.für dich\r\n`, 'utf8'),
    },
  ];
}

for (const peer of PEERS) {
  describe(`interop: Postwire delivers into ${peer.name}`, { skip: peer.gate.skip }, () => {
    const CASES = cases(peer.domain);
    let running: RunningPeer | undefined;
    let server: TestServer | undefined;
    let received: Arrival[] = [];
    const ids = new Map<string, QueueId>();

    before(async () => {
      running = await peer.start();
      server = await startTestServer(['--delivery', 'on', '--retry', '300ms', '--max-age', '1h', '--smarthost', `127.0.0.1:${running.port}`]);
      for (const c of CASES) ids.set(c.rcpt, await submit(server, SENDER, [c.rcpt], c.message, c.params));
      received = await running.waitFor(CASES.length);
    });
    after(async () => {
      try {
        await server?.stop();
      } finally {
        await running?.stop();
      }
    });

    for (const c of CASES) {
      it(`${c.name}: ${peer.holder} holds exactly the stored bytes`, async () => {
        assert.ok(server);
        const id = ids.get(c.rcpt);
        assert.ok(id);
        const got = received.find((m) => m.rcpts.includes(c.rcpt));
        assert.ok(got, `nothing received for ${c.rcpt}; got ${received.map((m) => m.rcpts.join(',')).join(' | ')}`);
        assert.deepEqual(got.rcpts, [c.rcpt]);
        assert.equal(got.sender, SENDER);
        if (got.originalTo !== undefined) assert.equal(got.originalTo, c.rcpt);
        if (got.mailOptions !== undefined) {
          for (const option of c.mailOptions) assert.ok(got.mailOptions.includes(option), `MAIL FROM carried ${option}: ${got.mailOptions.join(' ')}`);
        }
        if (got.smtpUtf8 !== undefined) assert.equal(got.smtpUtf8, c.mailOptions.includes('SMTPUTF8'));
        const stored = await readAll(server.store.readBody(id));
        assert.ok(stored.length >= c.message.length);
        assert.ok(stored.subarray(stored.length - c.message.length).equals(c.message), 'Postwire stored the submitted message');
        const expected = peer.form(stored);
        assert.equal(got.data.length, expected.length, 'same length');
        assert.ok(got.data.equals(expected), 'byte-exact');
        assert.deepEqual(await allInState(server, id, 'delivered'), ['delivered']);
      });
    }

    it(`each message reached ${peer.name} once`, async () => {
      assert.ok(running);
      // Give a duplicate delivery (a retry after a lost reply) a moment to show up.
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual((await running.arrivals()).flatMap((m) => m.rcpts).sort(), CASES.map((c) => c.rcpt).sort());
    });
  });
}

/**
 * The same Postfix next hop, offering STARTTLS with a certificate from the throwaway CA (for
 * 127.0.0.1, the smart host's name): Postwire runs with `--tls-policy verify --tls-ca-file`, so the
 * message can only leave inside a verified TLS session. Postfix's own Received: header says the
 * session used TLS; the maildir holds exactly the stored bytes; the history names the TLS.
 */
describe('interop: Postwire delivers into a real Postfix over STARTTLS (policy verify)', { skip: peerGate('Postfix', postfixUnavailable()).skip }, () => {
  const domain = PEER_DOMAIN;
  let postfix: Awaited<ReturnType<typeof startPostfix>> | undefined;
  let server: TestServer | undefined;

  after(async () => {
    try {
      await server?.stop();
    } finally {
      await postfix?.stop();
    }
  });

  it('a dot-heavy 1 MiB message arrives byte-exact, inside TLS, and the history says "certificate verified"', async () => {
    const ca = await createTestCa();
    const leaf = await ca.issue(['127.0.0.1', PEER_HOSTNAME]);
    postfix = await startPostfix({ smtpdTls: { certFile: leaf.certFile, keyFile: leaf.keyFile } });
    server = await startTestServer([
      '--delivery', 'on', '--retry', '300ms', '--max-age', '1h',
      '--smarthost', `127.0.0.1:${postfix.port}`, '--tls-policy', 'verify', '--tls-ca-file', ca.caFile,
    ]);
    const rcpt = `tls@${domain}`;
    const message = Buffer.concat([Buffer.from(`From: a@source.test\r\nTo: ${rcpt}\r\nSubject: over TLS\r\n\r\n`, 'latin1'), dotHeavyBody(1_048_576)]);
    const id = await submit(server, SENDER, [rcpt], message, '');
    const [got] = await postfix.waitForMessages(1);
    assert.ok(got);
    assert.match(got.received, /\(using TLSv1\.[23] with cipher /, `Postfix saw TLS: ${got.received}`);
    const stored = await readAll(server.store.readBody(id));
    const expected = unixForm(stored);
    assert.equal(got.body.length, expected.length);
    assert.ok(got.body.equals(expected), 'byte-exact');
    assert.deepEqual(await allInState(server, id, 'delivered'), ['delivered']);
    const history = await server.store.history(id);
    assert.ok(history.some((h) => /TLS TLSv1\.[23] \S+, certificate verified/.test(h.note ?? '')), JSON.stringify(history.map((h) => h.note)));
  });
});
