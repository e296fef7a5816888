/**
 * Inbound TLS and AUTH against a real Postwire on port 0, with a client that verifies our
 * certificate against a throwaway test CA (never `rejectUnauthorized: false`):
 * - STARTTLS (RFC 3207): offered before TLS only; after the handshake the session starts over
 *   (§4.2); the stored message says ESMTPSA and the TLS version in its Received: header, and its
 *   envelope keeps the AUTH user and REQUIRETLS.
 * - The STARTTLS injection class (CVE-2011-0411): `STARTTLS\r\nRSET\r\n` in one packet; after
 *   the handshake the client's first reply is its own EHLO's; RSET is never answered.
 * - AUTH (RFC 4954): 538 before TLS, 535 on a wrong password, throttled per IP (421, closed) and
 *   per user (454), each answer delayed; relay allowed once authenticated from outside
 *   --relay-from; MAIL FROM bound to the user's addresses; loopback plain-text AUTH by setting.
 * - The implicit-TLS submission listener (RFC 8314), and a failed handshake closing cleanly.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { createTestCa } from '../support/test-ca.js';
import type { TestCa, TestLeaf } from '../support/test-ca.js';
import { RawClient } from '../support/raw-client.js';
import { startTestServer } from '../support/server.js';
import type { TestServer } from '../support/server.js';
import { plain, writeTestUsers } from '../support/users.js';

const NAME = 'mx.example.test';
let ca: TestCa;
let leaf: TestLeaf;
let users: string;

before(async () => {
  ca = await createTestCa();
  leaf = await ca.issue([NAME, '127.0.0.1']);
  users = await writeTestUsers([
    { name: 'alice', password: 'correct horse', senders: ['alice@example.test', 'billing@example.test'] },
    { name: 'bob', password: 'b0b-pass' },
  ]);
});

const verifying = (): { ca: string; servername: string } => ({ ca: ca.ca, servername: NAME });

function tlsFlags(extra: readonly string[] = []): string[] {
  const delay = extra.includes('--auth-failure-delay') ? [] : ['--auth-failure-delay', '0s'];
  return ['--tls-cert', leaf.certFile, '--tls-key', leaf.keyFile, '--users', users, ...delay, ...extra];
}

async function ehlo(client: RawClient, name = 'client.test'): Promise<string[]> {
  const r = await client.command(`EHLO ${name}`);
  assert.equal(r.code, 250, r.text);
  return r.lines.slice(1);
}

/** Connect, read the banner, EHLO, STARTTLS, handshake (verifying), and EHLO again. */
async function startTls(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  assert.equal((await client.reply()).code, 220);
  await ehlo(client);
  assert.equal((await client.command('STARTTLS')).text, '2.0.0 Ready to start TLS');
  const secure = await client.startTls(verifying());
  assert.ok(secure.authorized, 'our certificate verifies against the test CA');
  return client;
}

describe('inbound STARTTLS and AUTH', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer(tlsFlags(['--relay-from', '10.0.0.0/8']));
  });
  after(() => server.stop());

  it('STARTTLS: offered before TLS only; the session starts over; the message records TLS, AUTH and REQUIRETLS', async () => {
    const client = await RawClient.connect(server.port);
    await client.reply();
    const before = await ehlo(client);
    assert.ok(before.includes('STARTTLS'));
    assert.ok(!before.some((k) => k.startsWith('AUTH')), 'AUTH is not offered in plain text');
    assert.ok(!before.includes('REQUIRETLS'));
    assert.equal((await client.command('STARTTLS')).code, 220);
    const secure = await client.startTls(verifying());
    assert.ok(secure.authorized);
    assert.ok(['TLSv1.2', 'TLSv1.3'].includes(secure.getProtocol() ?? ''), secure.getProtocol() ?? '');
    assert.equal((await client.command('MAIL FROM:<alice@example.test>')).code, 503, 'EHLO is forgotten after the handshake');
    const after = await ehlo(client);
    assert.ok(!after.includes('STARTTLS'));
    assert.ok(after.includes('AUTH PLAIN LOGIN'));
    assert.ok(after.includes('REQUIRETLS'));
    assert.equal((await client.command('STARTTLS')).code, 503);
    const auth = await client.command(`AUTH PLAIN ${plain('alice', 'correct horse')}`);
    assert.equal(`${auth.code} ${auth.text}`, '235 2.7.0 Authentication successful');
    assert.equal((await client.command('MAIL FROM:<alice@example.test> REQUIRETLS')).code, 250);
    assert.equal((await client.command('RCPT TO:<someone@elsewhere.test>')).code, 250, 'authenticated: relays from outside --relay-from');
    assert.equal((await client.command('DATA')).code, 354);
    const queued = await client.command('Subject: over TLS\r\n\r\nhello\r\n.');
    assert.equal(queued.code, 250, queued.text);
    assert.equal((await client.command('QUIT')).code, 221);
    client.close();
    const stored = (await server.messages()).at(-1);
    assert.ok(stored);
    assert.equal(stored.envelope.client.user, 'alice');
    assert.equal(stored.envelope.client.protocol, 'ESMTPSA');
    assert.equal(stored.envelope.requireTls, true);
    const head = stored.body.toString('latin1').split('\r\n\r\n')[0] ?? '';
    assert.match(head, /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\r\n\tby mx\.postwire\.test \(Postwire\) with ESMTPSA id /);
    assert.ok(!head.includes('alice'), 'the AUTH identity is not written into the message');
    const shown = await server.server.api.show(stored.id);
    assert.deepEqual(shown.client, { ip: '127.0.0.1', helo: 'client.test', protocol: 'ESMTPSA', user: 'alice' }, 'the admin API shows who sent it');
  });

  it('STARTTLS injection: bytes pipelined after STARTTLS are discarded, never answered after TLS', async () => {
    const client = await RawClient.connect(server.port);
    await client.reply();
    await ehlo(client);
    await client.write('STARTTLS\r\nRSET\r\nMAIL FROM:<evil@outside.test>\r\n');
    assert.equal((await client.reply()).code, 220);
    await client.startTls(verifying());
    await client.write('EHLO after.test\r\n');
    const first = await client.reply();
    assert.equal(first.code, 250);
    assert.equal(first.lines[0], 'mx.postwire.test', `the first reply after TLS is EHLO's, not RSET's: ${first.text}`);
    assert.ok(first.lines.includes('AUTH PLAIN LOGIN'));
    const noop = await client.command('NOOP');
    assert.equal(`${noop.code} ${noop.text}`, '250 2.0.0 Ok', 'nothing else was queued');
    assert.equal((await client.command('MAIL FROM:<a@example.test>')).code, 250, 'the injected MAIL never opened a transaction');
    client.close();
  });

  it('AUTH before TLS is 538 5.7.11, unauthenticated relay from outside --relay-from is refused', async () => {
    const client = await RawClient.connect(server.port);
    await client.reply();
    await ehlo(client);
    const r = await client.command(`AUTH PLAIN ${plain('alice', 'correct horse')}`);
    assert.equal(`${r.code} ${r.text}`, '538 5.7.11 Encryption required for requested authentication mechanism');
    assert.equal((await client.command('MAIL FROM:<alice@example.test>')).code, 250);
    assert.equal((await client.command('RCPT TO:<x@elsewhere.test>')).text, '5.7.1 <x@elsewhere.test>: Relay access denied');
    client.close();
    const tls = await startTls(server.port);
    await ehlo(tls);
    assert.equal((await tls.command('MAIL FROM:<a@example.test>')).code, 250);
    assert.equal((await tls.command('RCPT TO:<x@elsewhere.test>')).code, 554, 'TLS alone does not open the relay');
    tls.close();
  });

  it('AUTH LOGIN over TLS, with the 334 prompts; a wrong password is 535 5.7.8', async () => {
    const client = await startTls(server.port);
    await ehlo(client);
    assert.equal((await client.command('AUTH LOGIN')).text, Buffer.from('Username:').toString('base64'));
    assert.equal((await client.command(Buffer.from('bob').toString('base64'))).code, 334);
    const wrong = await client.command(Buffer.from('nope').toString('base64'));
    assert.equal(`${wrong.code} ${wrong.text}`, '535 5.7.8 Authentication credentials invalid');
    assert.equal((await client.command(`AUTH LOGIN ${Buffer.from('bob').toString('base64')}`)).code, 334);
    assert.equal((await client.command(Buffer.from('b0b-pass').toString('base64'))).code, 235);
    client.close();
  });
});

describe('AUTH throttling', () => {
  it('per IP: after N failures 421 4.7.0 and close, each answer delayed; the right password does not help', async () => {
    const server = await startTestServer(tlsFlags(['--auth-failures-per-ip', '3', '--auth-failure-delay', '300ms']));
    try {
      const client = await startTls(server.port);
      await ehlo(client);
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        const r = await client.command(`AUTH PLAIN ${plain('alice', `guess-${i}`)}`);
        assert.equal(r.code, 535);
        assert.ok(Date.now() - t0 >= 280, `a failure is answered after the delay (${Date.now() - t0} ms)`);
      }
      const t0 = Date.now();
      const throttled = await client.command(`AUTH PLAIN ${plain('alice', 'correct horse')}`);
      assert.equal(`${throttled.code} ${throttled.text}`, '421 4.7.0 Too many failed authentication attempts from your address; try again later');
      assert.ok(Date.now() - t0 >= 280);
      await client.waitClosed();
      const again = await startTls(server.port);
      await ehlo(again);
      assert.equal((await again.command(`AUTH PLAIN ${plain('bob', 'b0b-pass')}`)).code, 421, 'the IP stays throttled for the window');
      again.close();
    } finally {
      await server.stop();
    }
  });

  it('per user: after N failures 454 4.7.0 for that user only', async () => {
    const server = await startTestServer(tlsFlags(['--auth-failures-per-user', '2', '--auth-failures-per-ip', '100']));
    try {
      const client = await startTls(server.port);
      await ehlo(client);
      for (let i = 0; i < 2; i++) assert.equal((await client.command(`AUTH PLAIN ${plain('alice', 'wrong')}`)).code, 535);
      const r = await client.command(`AUTH PLAIN ${plain('alice', 'correct horse')}`);
      assert.equal(`${r.code} ${r.text}`, '454 4.7.0 Too many failed authentication attempts for this user; try again later');
      assert.equal((await client.command(`AUTH PLAIN ${plain('bob', 'b0b-pass')}`)).code, 235, 'another user is not affected');
      client.close();
    } finally {
      await server.stop();
    }
  });
});

describe('AUTH options', () => {
  it('sender binding: an authenticated user may use only its addresses (553 5.7.1); <> stays allowed', async () => {
    const server = await startTestServer(tlsFlags(['--sender-login-match', 'on']));
    try {
      const client = await startTls(server.port);
      await ehlo(client);
      assert.equal((await client.command(`AUTH PLAIN ${plain('alice', 'correct horse')}`)).code, 235);
      const other = await client.command('MAIL FROM:<bob@example.test>');
      assert.equal(`${other.code} ${other.text}`, '553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice');
      assert.equal((await client.command('MAIL FROM:<Billing@EXAMPLE.test>')).code, 250);
      assert.equal((await client.command('RSET')).code, 250);
      assert.equal((await client.command('MAIL FROM:<>')).code, 250);
      client.close();
    } finally {
      await server.stop();
    }
  });

  it('--auth-without-tls loopback: AUTH in plain text for a loopback client, named ESMTPA', async () => {
    const server = await startTestServer(['--users', users, '--auth-without-tls', 'loopback', '--relay-from', '10.0.0.0/8']);
    try {
      const client = await RawClient.connect(server.port);
      await client.reply();
      const keywords = await ehlo(client);
      assert.ok(keywords.includes('AUTH PLAIN LOGIN'));
      assert.ok(!keywords.includes('STARTTLS'), 'no certificate, no STARTTLS');
      assert.equal((await client.command(`AUTH PLAIN ${plain('bob', 'b0b-pass')}`)).code, 235);
      assert.equal((await client.command('MAIL FROM:<bob@example.test>')).code, 250);
      assert.equal((await client.command('RCPT TO:<x@elsewhere.test>')).code, 250);
      assert.equal((await client.command('DATA')).code, 354);
      assert.equal((await client.command('Subject: plain\r\n\r\nhi\r\n.')).code, 250);
      client.close();
      const stored = (await server.messages()).at(-1);
      assert.equal(stored?.envelope.client.protocol, 'ESMTPA');
      assert.equal(stored?.envelope.client.user, 'bob');
    } finally {
      await server.stop();
    }
  });
});

describe('the implicit-TLS submission listener (RFC 8314)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer(tlsFlags(['--submission', '127.0.0.1:0', '--relay-from', '10.0.0.0/8']));
  });
  after(() => server.stop());

  it('speaks TLS from the first byte: banner, EHLO with AUTH and REQUIRETLS, no STARTTLS', async () => {
    const at = server.server.submission;
    assert.ok(at);
    const client = await RawClient.connectTls(at.port, verifying());
    assert.equal((await client.reply()).code, 220);
    const keywords = await ehlo(client);
    assert.ok(keywords.includes('AUTH PLAIN LOGIN'));
    assert.ok(keywords.includes('REQUIRETLS'));
    assert.ok(!keywords.includes('STARTTLS'));
    assert.equal((await client.command(`AUTH PLAIN ${plain('bob', 'b0b-pass')}`)).code, 235);
    assert.equal((await client.command('MAIL FROM:<bob@example.test>')).code, 250);
    assert.equal((await client.command('RCPT TO:<x@elsewhere.test>')).code, 250);
    client.close();
  });

  it('a client that speaks plain text to it is closed without a banner', async () => {
    const at = server.server.submission;
    assert.ok(at);
    const socket = connect({ port: at.port, host: '127.0.0.1' });
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.write('EHLO plain.test\r\n');
    await new Promise<void>((resolve) => socket.on('close', () => resolve()));
    assert.ok(!received.includes('220 '), 'no SMTP was spoken before TLS');
    // The listener still serves the next client.
    const client = await RawClient.connectTls(at.port, verifying());
    assert.equal((await client.reply()).code, 220);
    client.close();
  });

  it('a client that does not trust our certificate fails the handshake', async () => {
    const other = await createTestCa('Another CA');
    const at = server.server.submission;
    assert.ok(at);
    await assert.rejects(RawClient.connectTls(at.port, { ca: other.ca, servername: NAME }), /self[- ]signed|unable to verify|certificate/i);
  });
});

describe('abuse limits per AUTH user', () => {
  let server: TestServer;
  before(async () => {
    // Loopback stays exempt (the default): only the user's own allowance can refuse here.
    server = await startTestServer(tlsFlags(['--relay-from', '10.0.0.0/8', '--user-message-rate', '2', '--user-recipient-rate', '3', '--rate-window', '1h']));
  });
  after(() => server.stop());

  async function authenticated(user: string, password: string): Promise<RawClient> {
    const client = await startTls(server.port);
    await ehlo(client);
    assert.equal((await client.command(`AUTH PLAIN ${plain(user, password)}`)).code, 235);
    return client;
  }

  it('counts messages and recipients per user, across sessions, from an exempt address; another user is not affected', async () => {
    const first = await authenticated('alice', 'correct horse');
    assert.equal((await first.command('MAIL FROM:<alice@example.test>')).code, 250);
    assert.equal((await first.command('RCPT TO:<a@elsewhere.test>')).code, 250);
    assert.equal((await first.command('RCPT TO:<b@elsewhere.test>')).code, 250);
    assert.equal((await first.command('RSET')).code, 250);
    first.close();
    // A new session of the same user spends the same allowance.
    const second = await authenticated('alice', 'correct horse');
    assert.equal((await second.command('MAIL FROM:<alice@example.test>')).code, 250);
    assert.equal((await second.command('RCPT TO:<c@elsewhere.test>')).code, 250);
    const overRecipients = await second.command('RCPT TO:<d@elsewhere.test>');
    assert.equal(overRecipients.code, 451, overRecipients.text);
    assert.match(overRecipients.text, /^4\.7\.1 Rate limit: at most 3 recipients per 1h for your user/);
    assert.equal((await second.command('RSET')).code, 250);
    const overMessages = await second.command('MAIL FROM:<alice@example.test>');
    assert.equal(overMessages.code, 451, overMessages.text);
    assert.match(overMessages.text, /^4\.7\.1 Rate limit: at most 2 messages per 1h for your user/);
    second.close();
    const other = await authenticated('bob', 'b0b-pass');
    assert.equal((await other.command('MAIL FROM:<bob@example.test>')).code, 250, "bob's allowance is his own");
    assert.equal((await other.command('RCPT TO:<e@elsewhere.test>')).code, 250);
    other.close();
  });
});
