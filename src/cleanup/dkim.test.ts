/**
 * The signing stream (cleanup/dkim): what it signs verifies with mailauth's verifier against the
 * published record; where the chunks are split never changes the signature; the From: domain
 * picks the key (exact, subdomains only when asked); messages it cannot align are left unsigned
 * with the reason.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { loadConfig, type DkimKeySetting } from '../config/index.js';
import { DkimKeyring, MessageSigner, fromDomain, type DkimResult } from './dkim.js';
import { dkimTable, makeDkimKey, verifyDkim, type TestDkimKey } from '../../test/support/dkim.js';
import { dotHeavyBody } from '../../test/support/delivery.js';

const SIGN_TIME = Date.UTC(2026, 10, 29, 12, 0, 0);

async function loadKeys(dir: string, toml: string): Promise<readonly DkimKeySetting[]> {
  const file = join(dir, `keys-${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(file, toml);
  const loaded = loadConfig({ argv: ['--config', file], env: {}, hostname: 'mx.example.test' });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  return loaded.config.dkim;
}

async function sign(keyring: DkimKeyring, message: Buffer, splits: readonly number[] = []): Promise<DkimResult> {
  const signer = new MessageSigner({ keyring, maxHeaderOctets: 1024 * 1024, signTime: SIGN_TIME });
  let at = 0;
  for (const cut of [...splits, message.length]) {
    await signer.write(message.subarray(at, cut));
    at = cut;
  }
  return signer.finish();
}

function signed(result: DkimResult): string {
  assert.ok(result.signed, `signed: ${result.signed ? '' : result.reason}`);
  return result.header;
}

const MESSAGE = Buffer.from(
  'Received: from client.test ([192.0.2.1])\r\n\tby mx.example.test with ESMTP id 1; Sun, 29 Nov 2026 12:00:00 +0000\r\n' +
    'From: "Alice @ Home" <alice@example.test>\r\nTo: bob@elsewhere.test\r\nSubject: hello  there\r\n' +
    'Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nHello Bob,\r\n\r\n.\r\n..dots\r\nbye\r\n\r\n\r\n',
  'latin1',
);

describe('cleanup/dkim: the signing stream', () => {
  let dir = '';
  let rsa: TestDkimKey;
  let ed: TestDkimKey;
  let keyring: DkimKeyring;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postwire-dkim-'));
    rsa = await makeDkimKey(dir, 'example.test', 'rsa1', 'rsa');
    ed = await makeDkimKey(dir, 'example.test', 'ed1', 'ed25519');
    keyring = new DkimKeyring(await loadKeys(dir, `${dkimTable(rsa)}\n${dkimTable(ed)}`));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('signs with every key of the From: domain (RSA-SHA256 and Ed25519), and both verify', async () => {
    const header = signed(await sign(keyring, MESSAGE));
    assert.match(header, /^DKIM-Signature: .*\r\nDKIM-Signature: .*\r\n$/s);
    assert.match(header, /a=rsa-sha256/);
    assert.match(header, /a=ed25519-sha256/);
    assert.match(header, /c=relaxed\/relaxed/);
    assert.match(header, /t=1795953600/, 'the signing time is the injected clock');
    const verdicts = await verifyDkim(Buffer.concat([Buffer.from(header, 'latin1'), MESSAGE]), [rsa, ed]);
    assert.deepEqual(verdicts.map((v) => [v.selector, v.result]).sort(), [['ed1', 'pass'], ['rsa1', 'pass']]);
  });

  it('a changed body or From: fails verification (the test can fail)', async () => {
    const header = Buffer.from(signed(await sign(keyring, MESSAGE)), 'latin1');
    const body = Buffer.from(MESSAGE.toString('latin1').replace('bye', 'BYE'), 'latin1');
    const from = Buffer.from(MESSAGE.toString('latin1').replace('alice@', 'mallory@'), 'latin1');
    for (const changed of [body, from]) {
      const verdicts = await verifyDkim(Buffer.concat([header, changed]), [rsa, ed]);
      // mailauth says `neutral` for a body hash mismatch and `fail` for a bad header signature.
      assert.equal(verdicts.length, 2);
      for (const v of verdicts) assert.ok(v.result === 'fail' || v.result === 'neutral', `${v.selector}: ${v.result} (${v.comment ?? ''})`);
    }
  });

  it('splitting the chunks anywhere gives the same signature (every single split, then random splits)', async () => {
    // Every split point with the Ed25519 key alone (fast, and the body and header handling is the
    // same for both); random multi-splits with both keys.
    const edOnly = new DkimKeyring(await loadKeys(dir, dkimTable(ed)));
    const edWhole = signed(await sign(edOnly, MESSAGE));
    for (let cut = 1; cut < MESSAGE.length; cut++) {
      assert.equal(signed(await sign(edOnly, MESSAGE, [cut])), edWhole, `split at ${cut}`);
    }
    const whole = signed(await sign(keyring, MESSAGE));
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: MESSAGE.length - 1 }), { maxLength: 40 }), async (cuts) => {
        assert.equal(signed(await sign(keyring, MESSAGE, [...cuts].sort((a, b) => a - b))), whole);
      }),
      { numRuns: 50 },
    );
  });

  it('dot-heavy and 8-bit bodies verify, large ones streamed in 64 KiB chunks', async () => {
    const eight = Buffer.concat([
      Buffer.from('From: alice@example.test\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n', 'latin1'),
      Buffer.from('Grüße, ½ € 日本語\r\n', 'utf8'),
      Buffer.from([...Array.from({ length: 128 }, (_, i) => 0x80 + i), 0x0d, 0x0a]),
    ]);
    const heavy = Buffer.concat([Buffer.from('From: alice@example.test\r\nSubject: dots\r\n\r\n', 'latin1'), dotHeavyBody(2 * 1024 * 1024)]);
    for (const message of [eight, heavy]) {
      const splits: number[] = [];
      for (let at = 65_536; at < message.length; at += 65_536) splits.push(at);
      const header = signed(await sign(keyring, message, splits));
      const verdicts = await verifyDkim(Buffer.concat([Buffer.from(header, 'latin1'), message]), [rsa, ed]);
      assert.deepEqual(verdicts.map((v) => v.result), ['pass', 'pass']);
    }
  });

  it('leaves unsigned, with the reason, what has no single From: domain or no key', async () => {
    const cases: Array<[string, string]> = [
      ['To: bob@elsewhere.test\r\n\r\nbody\r\n', 'no From: field'],
      ['From: a@example.test\r\nFrom: b@example.test\r\n\r\nbody\r\n', '2 From: fields'],
      ['From: a@example.test, b@other.test\r\n\r\nbody\r\n', 'From: addresses in 2 domains'],
      ['From: a@unknown.test\r\n\r\nbody\r\n', 'no DKIM key for the From: domain'],
      ['From: a@sub.example.test\r\n\r\nbody\r\n', 'no DKIM key for the From: domain'],
    ];
    for (const [text, reason] of cases) {
      const result = await sign(keyring, Buffer.from(text, 'latin1'));
      assert.equal(result.signed, false, text);
      if (!result.signed) assert.equal(result.reason, reason, text);
    }
  });

  it('a header section longer than the bound is left unsigned without being held', async () => {
    const signer = new MessageSigner({ keyring, maxHeaderOctets: 1024, signTime: SIGN_TIME });
    await signer.write(Buffer.from('From: alice@example.test\r\n', 'latin1'));
    for (let i = 0; i < 100; i++) await signer.write(Buffer.from(`X-Filler-${i}: ${'x'.repeat(60)}\r\n`, 'latin1'));
    await signer.write(Buffer.from('\r\nbody\r\n', 'latin1'));
    const result = await signer.finish();
    assert.equal(result.signed, false);
    if (!result.signed) assert.match(result.reason, /no end of the header section within 1024 octets/);
  });

  it('one octet per write signs the same', async () => {
    const whole = signed(await sign(keyring, MESSAGE));
    const signer = new MessageSigner({ keyring, maxHeaderOctets: 1024 * 1024, signTime: SIGN_TIME });
    for (let i = 0; i < MESSAGE.length; i++) await signer.write(MESSAGE.subarray(i, i + 1));
    assert.equal(signed(await signer.finish()), whole);
  });

  it('an empty header section (the message starts with the empty line) has no From:', async () => {
    const result = await sign(keyring, Buffer.from('\r\nFrom: not@a.header\r\n', 'latin1'), [1]);
    assert.equal(result.signed, false);
    if (!result.signed) assert.equal(result.reason, 'no From: field');
  });

  it('a message that is all header (no empty line) is signed as such', async () => {
    const message = Buffer.from('From: alice@example.test\r\nSubject: no body\r\n', 'latin1');
    const header = signed(await sign(keyring, message, [5]));
    assert.deepEqual((await verifyDkim(Buffer.concat([Buffer.from(header, 'latin1'), message]), [rsa, ed])).map((v) => v.result), ['pass', 'pass']);
  });
});

describe('cleanup/dkim: which key signs', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postwire-dkim-ring-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('exact domain first; a parent signs subdomains only with subdomains = true; case and trailing dots do not matter', async () => {
    const parent = await makeDkimKey(dir, 'example.org', 'p', 'ed25519');
    const child = await makeDkimKey(dir, 'news.example.org', 'c', 'ed25519');
    const plain = await makeDkimKey(dir, 'example.net', 'n', 'ed25519');
    const ring = new DkimKeyring(await loadKeys(dir, `${dkimTable(parent, 'subdomains = true\n')}\n${dkimTable(child)}\n${dkimTable(plain)}`));
    const pick = (d: string): string[] => ring.keysFor(d).map((k) => `${k.selector}@${k.domain}`);
    assert.deepEqual(pick('example.org'), ['p@example.org']);
    assert.deepEqual(pick('EXAMPLE.org.'), ['p@example.org']);
    assert.deepEqual(pick('news.example.org'), ['c@news.example.org']);
    assert.deepEqual(pick('deep.sales.example.org'), ['p@example.org']);
    assert.deepEqual(pick('example.net'), ['n@example.net']);
    assert.deepEqual(pick('sub.example.net'), [], 'no subdomains without subdomains = true');
    assert.deepEqual(pick('notexample.org'), []);
  });

  it('finds the From: domain past display names, comments, folding and groups', () => {
    const domainOf = (field: string): string => {
      const r = fromDomain(Buffer.from(`Subject: x\r\n${field}\r\nTo: y@z.test\r\n`, 'utf8'));
      return r.ok ? r.domain : `(${r.reason})`;
    };
    assert.equal(domainOf('From: "Bob <bob@evil.test>" <bob@good.test>'), 'good.test');
    assert.equal(domainOf('From: bob@good.test (Bob at evil.test, @x)'), 'good.test');
    assert.equal(domainOf('FROM:\r\n  Jörg\r\n <jorg@Good.TEST>'), 'good.test');
    assert.equal(domainOf('From: Friends: a@good.test, b@good.test;'), 'good.test');
    assert.equal(domainOf('From: undisclosed'), '(no address in the From: field)');
  });
});
