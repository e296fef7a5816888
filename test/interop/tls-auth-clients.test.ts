/**
 * Interop, inbound TLS and AUTH: real clients authenticate to a real Postwire over TLS and relay
 * from outside --relay-from (127.0.0.1 is outside 10.0.0.0/8, so only AUTH lets them relay), each
 * verifying our certificate against the test CA:
 * - swaks (Debian's swaks; TLS through libnet-ssleay-perl and libio-socket-ssl-perl):
 *   `--tls --auth PLAIN`, `--tls --auth LOGIN` (STARTTLS), and `--tlsc` on the submission port;
 * - nodemailer: `secure: true` on the submission port, and `requireTLS` (STARTTLS) with auth;
 * - Python's smtplib: starttls(context) then login().
 * Each stored message must carry the user and ESMTPSA. A missing program skips with the reason,
 * or fails on CI (test/support/interop.ts; scripts/ci-deps.sh installs them).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import nodemailer from 'nodemailer';
import { peerGate, runProcess } from '../support/interop.js';
import { createTestCa } from '../support/test-ca.js';
import type { TestCa } from '../support/test-ca.js';
import { startTestServer } from '../support/server.js';
import type { TestServer } from '../support/server.js';
import { writeTestUsers } from '../support/users.js';

const NAME = 'mx.example.test';

function swaksTlsUnavailable(): string | undefined {
  const probe = spawnSync('swaks', ['--support'], { encoding: 'utf8' });
  if (probe.error !== undefined) return "swaks not found (Debian's swaks package; scripts/ci-deps.sh installs it)";
  const text = `${probe.stdout}${probe.stderr}`;
  if (!/^=== TLS supported/m.test(text)) return "swaks has no TLS (Debian's libnet-ssleay-perl and libio-socket-ssl-perl; scripts/ci-deps.sh installs them)";
  if (!/^=== Basic AUTH supported/m.test(text)) return 'swaks cannot AUTH PLAIN/LOGIN';
  return undefined;
}
const SWAKS_GATE = peerGate('swaks with TLS', swaksTlsUnavailable());
const PYTHON = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import smtplib, ssl'], { stdio: 'ignore' }).status === 0);
const PYTHON_GATE = peerGate("Python's smtplib", PYTHON ? undefined : 'no python3 with smtplib and ssl on this machine');

describe('interop: TLS and AUTH clients', () => {
  let ca: TestCa;
  let server: TestServer;
  let submission: number;
  before(async () => {
    ca = await createTestCa();
    const leaf = await ca.issue([NAME, '127.0.0.1']);
    const users = await writeTestUsers([{ name: 'swaks', password: 's3cret swaks' }, { name: 'nm@example.test', password: 'nm-Pässwort' }, { name: 'py', password: 'py-pw' }]);
    server = await startTestServer([
      '--tls-cert', leaf.certFile, '--tls-key', leaf.keyFile, '--users', users, '--submission', '127.0.0.1:0',
      '--relay-from', '10.0.0.0/8', '--auth-failure-delay', '0s',
    ]);
    const at = server.server.submission;
    if (at === undefined) throw new Error('no submission listener');
    submission = at.port;
  });
  after(() => server.stop());

  /** The newest stored message with this subject: authenticated as `user`, over TLS. */
  async function assertStored(subject: string, user: string): Promise<void> {
    const found = (await server.messages()).find((m) => m.body.toString('utf8').includes(`Subject: ${subject}`));
    assert.ok(found, `a message with Subject: ${subject} was queued`);
    assert.equal(found.envelope.client.user, user);
    assert.match(found.envelope.client.protocol, /^(ESMTPSA|UTF8SMTPSA)$/);
    assert.match(found.body.toString('latin1'), /\(using TLSv1\.[23] with cipher /);
  }

  const swaksRuns: Array<{ title: string; args: (port: number, sub: number) => string[] }> = [
    { title: 'swaks --tls --auth PLAIN (STARTTLS)', args: (port) => ['--server', `127.0.0.1:${port}`, '--tls', '--auth', 'PLAIN'] },
    { title: 'swaks --tls --auth LOGIN (STARTTLS)', args: (port) => ['--server', `127.0.0.1:${port}`, '--tls', '--auth', 'LOGIN'] },
    { title: 'swaks --tlsc --auth PLAIN (implicit TLS, submission)', args: (_port, sub) => ['--server', `127.0.0.1:${sub}`, '--tlsc', '--auth', 'PLAIN'] },
  ];
  for (const run of swaksRuns) {
    it(`${run.title} relays from outside --relay-from`, { skip: SWAKS_GATE.skip }, async () => {
      const subject = run.title.replace(/[^a-z]+/gi, '-');
      const result = await runProcess('swaks', [
        ...run.args(server.port, submission),
        '--tls-verify', '--tls-ca-path', ca.caFile, '--tls-sni', NAME,
        '--auth-user', 'swaks', '--auth-password', 's3cret swaks',
        '--helo', 'swaks.client.test', '--from', 'swaks@client.test', '--to', 'someone@elsewhere.test',
        '--header', `Subject: ${subject}`, '--body', 'over TLS, authenticated',
      ]);
      assert.equal(result.status, 0, `swaks failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /235 2\.7\.0/);
      await assertStored(subject, 'swaks');
    });
  }

  it('swaks with a wrong password gets 535 5.7.8 and nothing is queued', { skip: SWAKS_GATE.skip }, async () => {
    const before = (await server.messages()).length;
    const result = await runProcess('swaks', [
      '--server', `127.0.0.1:${server.port}`, '--tls', '--tls-verify', '--tls-ca-path', ca.caFile, '--tls-sni', NAME,
      '--auth', 'PLAIN', '--auth-user', 'swaks', '--auth-password', 'wrong',
      '--from', 'swaks@client.test', '--to', 'someone@elsewhere.test',
    ]);
    assert.notEqual(result.status, 0);
    assert.match(result.stdout, /535 5\.7\.8/);
    assert.equal((await server.messages()).length, before);
  });

  it('nodemailer secure: true (implicit TLS) with auth', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1', port: submission, secure: true, name: 'nm.client.test',
      tls: { ca: ca.ca, servername: NAME }, auth: { user: 'nm@example.test', pass: 'nm-Pässwort' },
    });
    try {
      const info = await transport.sendMail({ from: 'nm@example.test', to: 'someone@elsewhere.test', subject: 'nodemailer-implicit', text: 'hi' });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
    } finally {
      transport.close();
    }
    await assertStored('nodemailer-implicit', 'nm@example.test');
  });

  it('nodemailer requireTLS (STARTTLS) with AUTH LOGIN and PLAIN', async () => {
    for (const method of ['LOGIN', 'PLAIN']) {
      const transport = nodemailer.createTransport({
        host: '127.0.0.1', port: server.port, secure: false, requireTLS: true, name: 'nm.client.test', authMethod: method,
        tls: { ca: ca.ca, servername: NAME }, auth: { user: 'nm@example.test', pass: 'nm-Pässwort' },
      });
      try {
        await transport.sendMail({ from: 'nm@example.test', to: 'someone@elsewhere.test', subject: `nodemailer-starttls-${method}`, text: 'hi' });
      } finally {
        transport.close();
      }
      await assertStored(`nodemailer-starttls-${method}`, 'nm@example.test');
    }
  });

  it("Python's smtplib: starttls(context) and login()", { skip: PYTHON_GATE.skip }, async () => {
    const script = String.raw`
import smtplib, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP("127.0.0.1", port, local_hostname="py.client.test") as s:
    s.ehlo()
    assert s.has_extn("starttls") and not s.has_extn("auth"), s.esmtp_features
    # smtplib checks the name it connected to: our certificate also names 127.0.0.1.
    s.starttls(context=ctx)
    s.ehlo()
    assert s.has_extn("auth") and s.has_extn("requiretls"), s.esmtp_features
    s.login("py", "py-pw")
    refused = s.sendmail("py@client.test", ["someone@elsewhere.test"], "Subject: python-starttls\r\n\r\nhello\r\n")
    assert refused == {}, refused
`;
    const run = await runProcess(PYTHON as string, ['-c', script, String(server.port), ca.caFile]);
    assert.equal(run.status, 0, `python failed:\n${run.stdout}\n${run.stderr}`);
    await assertStored('python-starttls', 'py');
  });
});
