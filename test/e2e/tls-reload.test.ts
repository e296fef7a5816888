/**
 * SIGHUP renews the TLS certificate and the AUTH user file of the real `postwire serve`: the
 * files are rewritten in place (as a certificate renewal does) and the process signalled.
 * New STARTTLS handshakes get the new certificate, a session already in TLS keeps working on
 * the one it began with, a certificate file that no longer loads keeps the running one (logged
 * with the reason), a user added to the file can authenticate, and a failed handshake is logged.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { createTestCa } from '../support/test-ca.js';
import { startServe } from '../support/process.js';
import { RawClient } from '../support/raw-client.js';
import { plain, writeTestUsers } from '../support/users.js';
import { until } from '../support/wait.js';

interface LogLine {
  readonly msg?: string;
  readonly [key: string]: unknown;
}

const NAME = 'mx.example.test';

describe('SIGHUP and TLS', () => {
  it('serves the new certificate to new sessions, keeps open TLS sessions, refuses a bad file, reloads users', async () => {
    const ca = await createTestCa();
    const first = await ca.issue([NAME, '127.0.0.1'], { stem: 'first' });
    const second = await ca.issue([NAME, '127.0.0.1'], { stem: 'second' });
    const dir = await mkdtemp(join(tmpdir(), 'postwire-tls-reload-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await copyFile(first.certFile, cert);
    await copyFile(first.keyFile, key);
    const users = await writeTestUsers([{ name: 'alice', password: 'alice-pw' }], dir);
    const logs: LogLine[] = [];
    const serve = await startServe(['--spool', join(dir, 'spool'), '--tls-cert', cert, '--tls-key', key, '--users', users, '--auth-failure-delay', '0s'], {
      onStdoutLine: (line) => {
        if (line.startsWith('{')) logs.push(JSON.parse(line) as LogLine);
      },
    });
    /** STARTTLS on a new connection; resolves with the client and the certificate it was served. */
    const session = async (): Promise<{ client: RawClient; fingerprint: string }> => {
      const client = await RawClient.connect(serve.port);
      await client.reply();
      await client.command('EHLO client.test');
      assert.equal((await client.command('STARTTLS')).code, 220);
      const secure = await client.startTls({ ca: ca.ca, servername: NAME });
      assert.equal((await client.command('EHLO client.test')).code, 250);
      return { client, fingerprint: secure.getPeerCertificate().fingerprint256 };
    };
    const fingerprintOf = (pem: string): string => new X509Certificate(pem).fingerprint256;
    try {
      const open = await session();
      assert.equal(open.fingerprint, fingerprintOf(first.cert));

      await copyFile(second.certFile, cert);
      await copyFile(second.keyFile, key);
      await writeTestUsers([{ name: 'alice', password: 'alice-pw' }, { name: 'carol', password: 'carol-pw' }], dir);
      serve.kill('SIGHUP');
      await until('certificate reloaded', () => logs.find((l) => l.msg === 'tls certificate reloaded'));
      await until('users reloaded', () => logs.find((l) => l.msg === 'user file reloaded' && l['users'] === 2));

      const fresh = await session();
      assert.equal(fresh.fingerprint, fingerprintOf(second.cert), 'a new session gets the new certificate');
      assert.equal((await fresh.client.command(`AUTH PLAIN ${plain('carol', 'carol-pw')}`)).code, 235, 'a user added to the file can log in');
      fresh.client.close();
      assert.equal((await open.client.command('NOOP')).code, 250, 'the session already in TLS keeps working');
      assert.equal((await open.client.command(`AUTH PLAIN ${plain('alice', 'alice-pw')}`)).code, 235);

      // A broken certificate file: the running certificate stays, the log says why.
      await writeFile(cert, '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n');
      serve.kill('SIGHUP');
      const failed = await until('reload failure', () => logs.find((l) => l.msg === 'tls certificate reload failed: the running certificate stays'));
      assert.match(String(failed['error']), new RegExp(`--tls-cert ${cert.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      const after = await session();
      assert.equal(after.fingerprint, fingerprintOf(second.cert));
      after.client.close();

      // A client that gives up on the handshake is logged, and the server serves on.
      const quitter = await RawClient.connect(serve.port);
      await quitter.reply();
      await quitter.command('EHLO client.test');
      assert.equal((await quitter.command('STARTTLS')).code, 220);
      await quitter.write('this is not a TLS ClientHello\r\n');
      await quitter.waitClosed();
      await until('handshake failure logged', () => logs.find((l) => l.msg === 'TLS handshake failed'));

      open.client.close();
      serve.kill('SIGTERM');
      assert.equal(await serve.exited, 0);
    } finally {
      serve.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
