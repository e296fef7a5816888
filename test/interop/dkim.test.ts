/**
 * Interop, DKIM: Postwire signs at enqueue, delivers to a real Postfix (test/support/postfix.ts,
 * virtual(8) into a maildir), and the file Postfix wrote verifies with mailauth's verifier against
 * the test's published keys: RSA-SHA256 and Ed25519 (RFC 8463), each with relaxed/relaxed, and
 * an RSA key with simple/simple, which breaks on any changed byte or whitespace of the signed
 * header fields or the body. Bodies: a plain one, 8-bit UTF-8 and raw high octets with
 * BODY=8BITMIME, a ~1 MiB dot-heavy one (lines '.', '..', '.x') and a header-only one.
 *
 * Postfix writes a mailbox in LF form after four header lines of its own; the check reads the
 * whole file back in CRLF form (lossless: Postwire's stored bytes have only CRLF line ends), so
 * Postfix's added fields are there too, as at any real receiver, and the signatures must hold.
 * Skips (and fails on CI) when Postfix is missing: test/support/interop.ts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerGate } from '../support/interop.js';
import { PEER_DOMAIN, postfixUnavailable, startPostfix, type PostfixPeer } from '../support/postfix.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { allInState, submit } from '../support/submit.js';
import { dotHeavyBody } from '../support/delivery.js';
import { dkimTable, makeDkimKey, verifyDkim, type TestDkimKey } from '../support/dkim.js';

const gate = peerGate('Postfix', postfixUnavailable());

interface Case {
  readonly name: string;
  readonly from: string;
  readonly rcpt: string;
  readonly params: string;
  readonly body: Buffer;
  /** selector:result of every signature the delivered file must carry. */
  readonly expect: readonly string[];
}

describe('interop: DKIM-signed mail through a real Postfix verifies', { skip: gate.skip }, () => {
  let dir = '';
  let keys: TestDkimKey[] = [];
  let postfix: PostfixPeer | undefined;
  let server: TestServer | undefined;
  const cases: Case[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postwire-interop-dkim-'));
    const rsa = await makeDkimKey(dir, 'rsa.source.test', 'r1', 'rsa');
    const ed = await makeDkimKey(dir, 'ed.source.test', 'e1', 'ed25519');
    const dual = [await makeDkimKey(dir, 'dual.source.test', 'dr', 'rsa'), await makeDkimKey(dir, 'dual.source.test', 'de', 'ed25519')];
    const simple = await makeDkimKey(dir, 'simple.source.test', 's1', 'rsa');
    keys = [rsa, ed, ...dual, simple];
    const config = join(dir, 'postwire.toml');
    await writeFile(config, [dkimTable(rsa), dkimTable(ed), ...dual.map((k) => dkimTable(k)), dkimTable(simple, 'canonicalization = "simple/simple"\n')].join('\n'));

    const head = (from: string, to: string, subject: string, extra = ''): string =>
      `From: Sender <${from}>\r\nTo: <${to}>\r\nSubject: ${subject}\r\nDate: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <${to.split('@')[0]}@source.test>\r\n${extra}\r\n`;
    const eightBit = (from: string, to: string): Buffer => Buffer.concat([
      Buffer.from(head(from, to, '8bit', 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n'), 'latin1'),
      Buffer.from('Grüße, ½ € 日本語\r\n', 'utf8'),
      Buffer.from([...Array.from({ length: 128 }, (_, i) => 0x80 + i), 0x0d, 0x0a]),
      Buffer.from('.é leading dot then 8-bit\r\n', 'utf8'),
    ]);
    const plain = (from: string, to: string): Buffer => Buffer.from(`${head(from, to, 'plain  spaced   subject')}Hello,\r\n\r\n.\r\n..\r\n.x\r\ntrailing space \r\n\r\n\r\n`, 'latin1');
    const heavy = (from: string, to: string): Buffer => Buffer.concat([Buffer.from(head(from, to, 'dots'), 'latin1'), dotHeavyBody(1_048_576)]);
    const add = (name: string, domain: string, local: string, body: (f: string, t: string) => Buffer, expect: string[], params = ''): void => {
      const from = `sender@${domain}`;
      const rcpt = `${local}@${PEER_DOMAIN}`;
      cases.push({ name, from, rcpt, params, body: body(from, rcpt), expect });
    };
    add('RSA-SHA256, plain', 'rsa.source.test', 'rsa-plain', plain, ['r1:pass']);
    add('RSA-SHA256, 8-bit', 'rsa.source.test', 'rsa-8bit', eightBit, ['r1:pass'], ' BODY=8BITMIME');
    add('RSA-SHA256, ~1 MiB dot-heavy', 'rsa.source.test', 'rsa-dots', heavy, ['r1:pass']);
    add('Ed25519, plain', 'ed.source.test', 'ed-plain', plain, ['e1:pass']);
    add('Ed25519, 8-bit', 'ed.source.test', 'ed-8bit', eightBit, ['e1:pass'], ' BODY=8BITMIME');
    add('Ed25519, ~1 MiB dot-heavy', 'ed.source.test', 'ed-dots', heavy, ['e1:pass']);
    add('dual RSA + Ed25519 signatures, 8-bit', 'dual.source.test', 'dual-8bit', eightBit, ['de:pass', 'dr:pass'], ' BODY=8BITMIME');
    add('simple/simple (byte-exact), plain', 'simple.source.test', 'simple-plain', plain, ['s1:pass']);
    add('simple/simple (byte-exact), 8-bit', 'simple.source.test', 'simple-8bit', eightBit, ['s1:pass'], ' BODY=8BITMIME');

    postfix = await startPostfix();
    server = await startTestServer(['--config', config, '--delivery', 'on', '--retry', '300ms', '--max-age', '1h', '--smarthost', `127.0.0.1:${postfix.port}`]);
    for (const c of cases) {
      const id = await submit(server, c.from, [c.rcpt], c.body, c.params);
      await allInState(server, id, 'delivered');
    }
    await postfix.waitForMessages(cases.length);
  });
  after(async () => {
    try {
      await server?.stop();
    } finally {
      await postfix?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  // Declared synchronously from a fixed list so that every case is its own test.
  for (const name of ['RSA-SHA256, plain', 'RSA-SHA256, 8-bit', 'RSA-SHA256, ~1 MiB dot-heavy', 'Ed25519, plain', 'Ed25519, 8-bit', 'Ed25519, ~1 MiB dot-heavy', 'dual RSA + Ed25519 signatures, 8-bit', 'simple/simple (byte-exact), plain', 'simple/simple (byte-exact), 8-bit']) {
    it(`${name}: the maildir file verifies`, async () => {
      assert.ok(postfix);
      const c = cases.find((x) => x.name === name);
      assert.ok(c, name);
      const got = (await postfix.messages()).find((m) => m.deliveredTo === c.rcpt);
      assert.ok(got, `Postfix holds no message for ${c.rcpt}`);
      assert.match(got.body.toString('latin1'), /^DKIM-Signature: v=1; /, 'the signature is the first field after Postfix\'s own');
      const whole = Buffer.from(got.raw.toString('latin1').replaceAll('\n', '\r\n'), 'latin1');
      const verdicts = await verifyDkim(whole, keys);
      assert.deepEqual(verdicts.map((v) => `${v.selector}:${v.result}`).sort(), c.expect, JSON.stringify(verdicts));
      // The check can fail: one changed body byte breaks every signature.
      const tampered = Buffer.from(whole.toString('latin1').replace(/\r\n\r\n([^])/, (_m, ch: string) => `\r\n\r\n${ch === 'X' ? 'Y' : 'X'}`), 'latin1');
      for (const v of await verifyDkim(tampered, keys)) assert.notEqual(v.result, 'pass', `${v.selector} passed a tampered body`);
    });
  }
});
