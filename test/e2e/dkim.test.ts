/**
 * DKIM signing end to end, through the real composition root (in-process) and the real binary:
 *
 * - a retry sends byte-identical signed bytes: the sink tempfails the first end-of-data, accepts
 *   the second, and both transactions carry the same DKIM-Signature and body, which verifies;
 * - a DSN Postwire writes is signed when a key covers its From: domain (the host name's parent
 *   with `subdomains = true`);
 * - the admin API's `show` (what `postwire queue show` prints) lists the DKIM-Signature first;
 * - a key that cannot sign refuses the message with 451 4.3.0 and queues nothing;
 * - SIGHUP's reload takes a new key for the next message;
 * - `postwire serve` and `postwire check-config` exit 2 naming the file, the table and the
 *   problem for a missing or bad key file; check-config lists good keys without key material;
 * - the openssl commands docs/security.md gives (key generation, the p= value of the TXT record)
 *   make keys Postwire loads and records that verify what it signs.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/index.js';
import { startServer } from '../../src/main.js';
import { silentLogger } from '../../src/obs/index.js';
import { RawClient } from '../support/raw-client.js';
import { startTestServer, withDefaults } from '../support/server.js';
import type { TestServer } from '../support/server.js';
import { allInState, submit } from '../support/submit.js';
import type { FakeSmtpServer } from '../fakes/fake-smtp-server.js';
import { runPostwire, described } from '../support/cli.js';
import { dkimTable, makeDkimKey, verifyDkim, type TestDkimKey } from '../support/dkim.js';
import { until } from '../support/wait.js';
import { withRelay } from '../support/relay.js';
import { runProcess } from '../support/interop.js';
import { readAll } from '../support/server.js';


function message(from: string, to: string, subject: string): string {
  return `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@source.test>\r\n\r\nHello.\r\n.leading dot\r\n`;
}

describe('e2e: DKIM signing through Postwire', () => {
  let dir = '';
  let rsa: TestDkimKey;
  let ed: TestDkimKey;
  let bounceKey: TestDkimKey;
  let config = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postwire-e2e-dkim-'));
    rsa = await makeDkimKey(dir, 'signed.test', 'rsa2026', 'rsa');
    ed = await makeDkimKey(dir, 'signed.test', 'ed2026', 'ed25519');
    // The test server's host name is mx.postwire.test: its DSNs come from MAILER-DAEMON@mx.postwire.test.
    bounceKey = await makeDkimKey(dir, 'postwire.test', 'dsn', 'ed25519');
    config = join(dir, 'dkim.toml');
    await writeFile(config, `${dkimTable(rsa)}\n${dkimTable(ed)}\n${dkimTable(bounceKey, 'subdomains = true\n')}`);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const withSigningRelay = (body: (server: TestServer, sink: FakeSmtpServer) => Promise<void>): Promise<void> => withRelay(['--config', config], undefined, body);

  it('a retry sends byte-identical signed bytes, and they verify (RSA-SHA256 and Ed25519)', async () => {
    await withSigningRelay(async (server, sink) => {
      const rcpt = 'tempfail-data-once-1@sink.test';
      const id = await submit(server, 'alice@signed.test', [rcpt], message('Alice <alice@signed.test>', rcpt, 'retry me'));
      await allInState(server, id, 'delivered');
      const seen = sink.transactions.filter((t) => t.rcpts.includes(rcpt));
      assert.equal(seen.length, 2, 'a tempfailed attempt, then the accepted one');
      const [first, second] = seen;
      assert.ok(first && second);
      assert.ok(first.data.equals(second.data), 'the retry sent exactly the bytes of the first attempt');
      const text = second.data.toString('latin1');
      assert.match(text, /^DKIM-Signature: v=1; a=rsa-sha256;[^]*\r\nDKIM-Signature: v=1; a=ed25519-sha256;[^]*\r\nReceived: from /);
      const verdicts = await verifyDkim(second.data, [rsa, ed]);
      assert.deepEqual(verdicts.map((v) => `${v.selector}:${v.result}`).sort(), ['ed2026:pass', 'rsa2026:pass']);
      const stored = await server.store.getMessage(id);
      assert.ok(stored?.envelope.prepend);
      assert.equal(stored.size, second.data.length, 'size counts the prepended signature');
    });
  });

  it('signs the DSN Postwire writes when a key covers its From: domain', async () => {
    await withSigningRelay(async (server, sink) => {
      const rcpt = 'reject-1@sink.test';
      await submit(server, 'sender@sink.test', [rcpt], message('Alice <alice@signed.test>', rcpt, 'bounce me'), ' RET=FULL');
      await until('the DSN at the sink', () => sink.delivered.some((t) => t.rcpts.includes('sender@sink.test')));
      const dsn = sink.delivered.find((t) => t.rcpts.includes('sender@sink.test'));
      assert.ok(dsn);
      assert.equal(dsn.mailFrom, '');
      assert.match(dsn.data.toString('latin1'), /^DKIM-Signature: [^]*d=postwire\.test;/);
      assert.match(dsn.data.toString('latin1'), /\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx\.postwire\.test>\r\n/);
      const verdicts = await verifyDkim(dsn.data, [bounceKey]);
      assert.deepEqual(verdicts.map((v) => `${v.domain}:${v.result}`), ['postwire.test:pass']);
      // RET=FULL's returned original is the message as it was sent: its signature included.
      assert.match(dsn.data.toString('latin1'), /Content-Type: message\/rfc822\r\n(?:Content-Transfer-Encoding: \w+\r\n)?\r\nDKIM-Signature: v=1; a=rsa-sha256/);
    });
  });

  it('mail from a domain without a key is left unsigned', async () => {
    await withSigningRelay(async (server, sink) => {
      const rcpt = 'plain@sink.test';
      const id = await submit(server, 'bob@unsigned.test', [rcpt], message('bob@unsigned.test', rcpt, 'no key'));
      await allInState(server, id, 'delivered');
      const got = sink.delivered.find((t) => t.rcpts.includes(rcpt));
      assert.ok(got);
      assert.match(got.data.toString('latin1'), /^Received: from /);
      assert.equal((await server.store.getMessage(id))?.envelope.prepend, undefined);
    });
  });

  it('queue show lists the DKIM-Signature first, as it will be sent; /metrics counts it', async () => {
    const server = await startTestServer(['--config', config, '--admin', '127.0.0.1:0']);
    try {
      const id = await submit(server, 'alice@signed.test', ['x@sink.test'], message('alice@signed.test', 'x@sink.test', 'show me'));
      const shown = await server.server.api.show(id);
      assert.deepEqual(shown.headers.slice(0, 3).map((h) => h.name), ['DKIM-Signature', 'DKIM-Signature', 'Received']);
      assert.match(shown.headers[0]?.value ?? '', /s=rsa2026/);
      const admin = server.server.admin;
      assert.ok(admin);
      const metrics = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
      assert.match(metrics, /^postwire_dkim_messages_total\{domain="signed\.test",result="signed"\} 1$/m);
    } finally {
      await server.stop();
    }
  });

  it('a key that cannot sign refuses the message with 451 4.3.0 and queues nothing', async () => {
    const spool = await mkdtemp(join(tmpdir(), 'postwire-e2e-dkim-bad-'));
    const loaded = loadConfig({ argv: ['--listen', '127.0.0.1:0', '--spool', spool, '--hostname', 'mx.postwire.test', '--config', config, ...withDefaults(['--admin', '127.0.0.1:0'])], env: {}, hostname: 'h' });
    assert.ok(loaded.ok);
    // A key that passed the load and then cannot sign (the check at load is what keeps this out in practice).
    const broken = { ...loaded.config, dkim: loaded.config.dkim.map((k) => ({ ...k, privateKey: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' })) };
    const server = await startServer(broken, { log: silentLogger });
    try {
      const c = await RawClient.connect(server.listeners[0]?.port ?? 0);
      try {
        await c.reply();
        await c.command('EHLO source.test');
        await c.command('MAIL FROM:<alice@signed.test>');
        await c.command('RCPT TO:<x@sink.test>');
        assert.equal((await c.command('DATA')).code, 354);
        await c.write(Buffer.from(`${message('alice@signed.test', 'x@sink.test', 'broken')}.\r\n`, 'latin1'));
        const r = await c.reply();
        assert.equal(r.code, 451, r.text);
        assert.match(r.text, /4\.3\.0/);
      } finally {
        c.close();
      }
      assert.deepEqual(await server.store.listMessages(), []);
      const metrics = await (await fetch(`http://${server.admin?.host ?? ''}:${server.admin?.port ?? 0}/metrics`)).text();
      assert.match(metrics, /^postwire_dkim_messages_total\{domain="signed\.test",result="failed"\} 1$/m);
    } finally {
      await server.close('test over');
      await rm(spool, { recursive: true, force: true });
    }
  });

  it('a reload takes a new key for the next message', async () => {
    const server = await startTestServer(['--config', config]);
    const rotated = await makeDkimKey(dir, 'signed.test', 'next', 'ed25519');
    const next = join(dir, 'rotated.toml');
    await writeFile(next, dkimTable(rotated));
    try {
      const before = await submit(server, 'a@signed.test', ['x@sink.test'], message('a@signed.test', 'x@sink.test', 'before'));
      const loaded = loadConfig({ argv: ['--listen', '127.0.0.1:0', '--spool', server.spool, '--hostname', 'mx.postwire.test', '--config', next, ...withDefaults([])], env: {}, hostname: 'h' });
      const result = server.server.reload(loaded);
      assert.ok(result.ok && result.live.includes('dkim'), JSON.stringify(result));
      const after = await submit(server, 'a@signed.test', ['x@sink.test'], message('a@signed.test', 'x@sink.test', 'after'));
      assert.match((await server.store.getMessage(before))?.envelope.prepend ?? '', /s=rsa2026/);
      const prepend = (await server.store.getMessage(after))?.envelope.prepend ?? '';
      assert.match(prepend, /s=next;/);
      assert.doesNotMatch(prepend, /rsa2026/);
    } finally {
      await server.stop();
    }
  });
});

describe('e2e: a bad DKIM key stops the real binary with exit 2', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postwire-cli-dkim-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('serve and check-config name the file, the table and the problem; nothing starts', async () => {
    const missing = join(dir, 'missing.pem');
    const garbage = join(dir, 'garbage.pem');
    await writeFile(garbage, 'not a key\n');
    for (const [name, keyFile, problem] of [
      ['missing', missing, 'cannot read the key: no such file'],
      ['garbage', garbage, 'not a PEM private key'],
    ] as const) {
      const file = join(dir, `${name}.toml`);
      await writeFile(file, `hostname = "mx.example.test"\n\n[[dkim]]\ndomain = "example.test"\nselector = "s1"\nkey-file = ${JSON.stringify(keyFile)}\n`);
      const spool = join(dir, `spool-${name}`);
      for (const args of [['serve', '--config', file, '--listen', '127.0.0.1:0', '--admin', 'off', '--spool', spool], ['check-config', '--config', file]]) {
        const r = await runPostwire(args);
        assert.equal(r.code, 2, described(r));
        assert.ok(r.stderr.includes(`postwire: ${file}:3: dkim[0]: "key-file" ${JSON.stringify(keyFile)}: ${problem}`), described(r));
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      }
    }
  });

  it('check-config lists the keys (what signs, never the key)', async () => {
    const key = await makeDkimKey(dir, 'example.test', 's1', 'rsa');
    const file = join(dir, 'good.toml');
    await writeFile(file, dkimTable(key));
    const r = await runPostwire(['check-config', '--config', file]);
    assert.equal(r.code, 0, described(r));
    assert.ok(r.stdout.includes(`dkim[0] = {"domain":"example.test","selector":"s1","key-file":${JSON.stringify(key.file)},"algorithm":"rsa-sha256","bits":2048,`), described(r));
    assert.doesNotMatch(r.stdout, /PRIVATE KEY|MII/);
  });
});

describe('e2e: the key commands in docs/security.md work', () => {
  it('openssl-made RSA and Ed25519 keys load, sign, and verify against the TXT values the docs derive', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-dkim-docs-'));
    try {
      const sh = async (script: string): Promise<string> => {
        const r = await runProcess('sh', ['-ec', script]);
        assert.equal(r.status, 0, `${script}\n${r.stderr}`);
        return r.stdout.trim();
      };
      const rsaPem = join(dir, 'example.test-rsa.pem');
      const edPem = join(dir, 'example.test-ed.pem');
      // Exactly the commands of docs/security.md, "Generating keys".
      await sh(`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${rsaPem}`);
      await sh(`openssl genpkey -algorithm ed25519 -out ${edPem}`);
      const rsaP = await sh(`openssl pkey -in ${rsaPem} -pubout -outform DER | openssl base64 -A`);
      const edP = await sh(`openssl pkey -in ${edPem} -pubout -outform DER | tail -c 32 | openssl base64 -A`);
      const keys: TestDkimKey[] = [
        { domain: 'example.test', selector: 'rsa2026', file: rsaPem, dnsName: 'rsa2026._domainkey.example.test', txt: `v=DKIM1; k=rsa; p=${rsaP}` },
        { domain: 'example.test', selector: 'ed2026', file: edPem, dnsName: 'ed2026._domainkey.example.test', txt: `v=DKIM1; k=ed25519; p=${edP}` },
      ];
      const config = join(dir, 'postwire.toml');
      await writeFile(config, keys.map((k) => dkimTable(k)).join('\n'));
      const server = await startTestServer(['--config', config]);
      try {
        const id = await submit(server, 'a@example.test', ['x@elsewhere.test'], message('a@example.test', 'x@elsewhere.test', 'docs'));
        const stored = await server.store.getMessage(id);
        assert.ok(stored?.envelope.prepend);
        const whole = Buffer.concat([Buffer.from(stored.envelope.prepend, 'utf8'), await readAll(server.store.readBody(id))]);
        const verdicts = await verifyDkim(whole, keys);
        assert.deepEqual(verdicts.map((v) => `${v.selector}:${v.algo}:${v.result}`).sort(), ['ed2026:ed25519-sha256:pass', 'rsa2026:rsa-sha256:pass']);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
