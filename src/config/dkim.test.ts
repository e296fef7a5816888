/**
 * @module config/dkim.test
 * The `[[dkim]]` tables end to end through loadConfig: a good RSA and Ed25519 key load with the
 * algorithm that follows the key; every way a key can be wrong is an error naming the file, the
 * line, the table's index and the problem (the message is the interface an operator sees);
 * check-config's lines never hold key material; a reload takes changed keys live.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeConfig, loadConfig, planReload, type Config } from './index.js';

describe('config: [[dkim]] keys', () => {
  let dir = '';
  let rsa = '';
  let ed = '';
  let weak = '';
  let tiny = '';
  let ec = '';
  let encrypted = '';
  let garbage = '';
  let n = 0;

  const pem = (key: import('node:crypto').KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }).toString();
  async function keyFile(name: string, content: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, content, { mode: 0o600 });
    return path;
  }
  async function load(toml: string): Promise<{ ok: true; config: Config } | { ok: false; errors: string[]; path: string }> {
    const path = join(dir, `c${n++}.toml`);
    await writeFile(path, toml);
    const r = loadConfig({ argv: ['--config', path], env: {}, hostname: 'mx.example.test' });
    return r.ok ? r : { ok: false, errors: r.errors, path };
  }
  const table = (fields: Record<string, string | boolean | string[]>): string =>
    `[[dkim]]\n${Object.entries(fields).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join('\n')}\n`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postwire-config-dkim-'));
    rsa = await keyFile('rsa.pem', pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey));
    // PKCS#1 ("BEGIN RSA PRIVATE KEY", what `openssl genrsa` wrote for years) is accepted too.
    weak = await keyFile('weak.pem', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
    tiny = await keyFile('tiny.pem', pem(generateKeyPairSync('rsa', { modulusLength: 768 }).privateKey));
    ed = await keyFile('ed.pem', pem(generateKeyPairSync('ed25519').privateKey));
    ec = await keyFile('ec.pem', pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey));
    encrypted = await keyFile('enc.pem', generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }).toString());
    garbage = await keyFile('garbage.pem', 'this is not a key\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads RSA and Ed25519 keys with the algorithm the key decides, and the defaults', async () => {
    const r = await load(table({ domain: 'Example.COM.', selector: 's1', 'key-file': rsa }) + table({ domain: 'example.com', selector: 'ed', 'key-file': ed, subdomains: true, canonicalization: 'relaxed/simple', headers: ['From', 'To', 'Subject'] }));
    assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
    const [a, b] = r.config.dkim;
    assert.ok(a && b);
    assert.deepEqual({ ...a, privateKey: a.privateKey.slice(0, 27) }, {
      domain: 'example.com', selector: 's1', keyFile: rsa, algorithm: 'rsa-sha256', bits: 2048, privateKey: '-----BEGIN PRIVATE KEY-----',
      headers: a.headers, canonicalization: 'relaxed/relaxed', subdomains: false,
    });
    assert.ok(a.headers.includes('From') && a.headers.includes('Subject') && a.headers.includes('Message-ID'));
    assert.equal(b.algorithm, 'ed25519-sha256');
    assert.equal(b.bits, undefined);
    assert.equal(b.canonicalization, 'relaxed/simple');
    assert.deepEqual(b.headers, ['From', 'To', 'Subject']);
    assert.equal(b.subdomains, true);
  });

  it('every bad key is an error naming the file, line, table index and problem', async () => {
    const missing = join(dir, 'nope.pem');
    const r = await load(
      'hostname = "mx.example.com"\n\n' +
        table({ domain: 'a.example', selector: 's', 'key-file': missing }) +
        table({ domain: 'b.example', selector: 's', 'key-file': garbage }) +
        table({ domain: 'c.example', selector: 's', 'key-file': encrypted }) +
        table({ domain: 'd.example', selector: 's', 'key-file': ec }) +
        table({ domain: 'e.example', selector: 's', 'key-file': tiny }) +
        table({ domain: 'f.example', selector: 's', 'key-file': ed, algorithm: 'rsa-sha256' }) +
        table({ domain: 'g.example', selector: 's', 'key-file': dir }) +
        table({ domain: 'not a domain', selector: 's', 'key-file': ed }) +
        table({ domain: 'h.example', selector: 's', 'key-file': ed, headers: ['To', 'Subject'] }) +
        table({ domain: 'i.example', selector: 's', 'key-file': ed, colour: 'blue' }) +
        table({ domain: 'j.example', selector: 's', 'key-file': ed, canonicalization: 'relaxed' }) +
        table({ domain: 'k.example', selector: 's', 'key-file': ed }) +
        table({ domain: 'K.example', selector: 's', 'key-file': rsa }) +
        table({ domain: 'l.example', selector: 's' }),
    );
    assert.equal(r.ok, false);
    if (r.ok) return;
    const at = (i: number, line: number): string => `${r.path}:${line}: dkim[${i}]`;
    const expected = [
      `${at(0, 3)}: "key-file" ${JSON.stringify(missing)}: cannot read the key: no such file`,
      `${at(1, 7)}: "key-file" ${JSON.stringify(garbage)}: not a PEM private key`,
      `${at(2, 11)}: "key-file" ${JSON.stringify(encrypted)}: the key is encrypted: Postwire needs it without a passphrase`,
      `${at(3, 15)}: "key-file" ${JSON.stringify(ec)}: a ec key has no DKIM algorithm`,
      `${at(4, 19)}: "key-file" ${JSON.stringify(tiny)}: the RSA key has 768 bits; DKIM verifiers refuse keys under 1024 bits`,
      `${at(5, 23)}: "algorithm" is rsa-sha256 but "key-file" ${JSON.stringify(ed)} holds an Ed25519 key, which signs ed25519-sha256`,
      `${at(6, 28)}: "key-file" ${JSON.stringify(dir)}: cannot read the key: is a directory`,
      `${at(7, 32)}: "domain" "not a domain" is not a domain name`,
      `${at(8, 36)}: "headers" must include "From"`,
      `${at(9, 41)}: field "colour" is unknown`,
      `${at(10, 46)}: "canonicalization" must be one of relaxed/relaxed`,
      `${at(12, 55)}: the same domain and selector as dkim[11] (s._domainkey.k.example)`,
      `${at(13, 59)}: "key-file" must name the private key's PEM file`,
    ];
    for (const e of expected) assert.ok(r.errors.some((x) => x.startsWith(e)), `missing: ${e}\ngot:\n${r.errors.join('\n')}`);
    assert.equal(r.errors.length, expected.length, r.errors.join('\n'));
  });

  it('a weak (1024-bit) RSA key loads; check-config shows it with a warning, and never the key', async () => {
    const r = await load(table({ domain: 'example.com', selector: 'old', 'key-file': weak }) + table({ domain: 'example.com', selector: 'ed', 'key-file': ed }));
    assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
    const text = describeConfig(r.config);
    const lines = text.split('\n').filter((l) => l.startsWith('dkim['));
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? '', /^dkim\[0\] = \{"domain":"example.com","selector":"old","key-file":".*weak.pem","algorithm":"rsa-sha256","bits":1024,.*"warning":"the RSA key in .* has 1024 bits: use 2048/);
    assert.match(lines[1] ?? '', /"algorithm":"ed25519-sha256"/);
    assert.doesNotMatch(text, /PRIVATE KEY|MII/, 'no key material');
    assert.match(describeConfig((await load('')).ok ? ((await load('')) as { config: Config }).config : assert.fail()), /^dkim = \(none\)$/m);
  });

  it('the JSON spelling is a "dkim" list; a typo of the key suggests the table', async () => {
    const path = join(dir, 'c.json');
    await writeFile(path, JSON.stringify({ dkim: [{ domain: 'example.com', selector: 's', 'key-file': ed }] }));
    const r = loadConfig({ argv: ['--config', path], env: {}, hostname: 'h' });
    assert.ok(r.ok);
    assert.equal(r.config.dkim[0]?.algorithm, 'ed25519-sha256');
    const typo = await load('[[dkm]]\ndomain = "x"\n');
    assert.equal(typo.ok, false);
    if (!typo.ok) assert.match(typo.errors.join('\n'), /key "dkm" is unknown \(did you mean "dkim"\?\) \(DKIM keys are \[\[dkim\]\] tables\)/);
  });

  it('a reload takes changed keys live', async () => {
    const one = await load(table({ domain: 'example.com', selector: 's1', 'key-file': ed }));
    const two = await load(table({ domain: 'example.com', selector: 's2', 'key-file': rsa }));
    assert.ok(one.ok && two.ok);
    const plan = planReload(one.config, two.config);
    assert.deepEqual(plan.live, ['dkim']);
    assert.equal(plan.config.dkim[0]?.selector, 's2');
    assert.deepEqual(planReload(one.config, one.config).live, []);
  });
});
