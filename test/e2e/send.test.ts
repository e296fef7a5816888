/**
 * `postwire send`, the real binary, reading stdin like sendmail: against a real Postwire (bodies
 * checked byte-exact in its queue) and against the scriptable sink for refusals (its magic
 * recipients give 550 and 451). Exit codes: 0 queued, 75 for a 4xx, 1 for a 5xx, 2 for usage.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runPostwire } from '../support/cli.js';
import type { CliRun } from '../support/cli.js';
import { startTestServer, withoutTraceHeader, type TestServer } from '../support/server.js';
import { startFakeSmtp, type FakeSmtpServer } from '../fakes/fake-smtp-server.js';

/** `postwire send` with a bare environment (PATH, USER=app and `env`), the message on stdin. */
const send = (args: readonly string[], stdin: Buffer | string, env: Record<string, string> = {}): Promise<CliRun> =>
  runPostwire(['send', ...args], { USER: 'app', ...env }, 20_000, { stdin, bareEnv: true });

let server: TestServer;
let sink: FakeSmtpServer;
before(async () => {
  server = await startTestServer();
  sink = await startFakeSmtp();
});
after(async () => {
  await server.stop();
  await sink.close();
});

async function last(): Promise<{ sender: string; recipients: string[]; body: Buffer }> {
  const all = await server.messages();
  const m = all[all.length - 1];
  assert.ok(m, 'a message was queued');
  return { sender: m.envelope.sender, recipients: m.recipients.map((r) => r.address), body: withoutTraceHeader(m.body) };
}

describe('postwire send', () => {
  it('-i: dot lines and 8-bit octets arrive byte-exact, LF becomes CRLF', async () => {
    const input = Buffer.concat([
      Buffer.from('Subject: dots\nX-Name: J\u00fcrgen\n\n.\n..\n.leading\r\nplain '),
      Buffer.from([0xe9, 0xff, 0x80]),
      Buffer.from('\nno newline at the end'),
    ]);
    const r = await send(['-i', '-f', 'app@source.test', '--server', `127.0.0.1:${server.port}`, 'one@dest.test', 'two@dest.test'], input);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const m = await last();
    assert.equal(m.sender, 'app@source.test');
    assert.deepEqual(m.recipients, ['one@dest.test', 'two@dest.test']);
    const expected = Buffer.concat([
      Buffer.from('Subject: dots\r\nX-Name: J\u00fcrgen\r\n\r\n.\r\n..\r\n.leading\r\nplain '),
      Buffer.from([0xe9, 0xff, 0x80]),
      Buffer.from('\r\nno newline at the end\r\n'),
    ]);
    assert.ok(m.body.equals(expected), `stored:\n${m.body.toString('latin1')}`);
  });

  it('without -i a line holding a single dot ends the message (sendmail semantics)', async () => {
    const r = await send(['-f', 'app@source.test', '--server', `127.0.0.1:${server.port}`, 'one@dest.test'], 'Subject: short\n\nkept\n.\nignored\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await last()).body.toString(), 'Subject: short\r\n\r\nkept\r\n');
  });

  it('-t takes recipients from To, Cc and Bcc, removes Bcc, and adds the command line ones', async () => {
    const input = [
      'From: App <app@source.test>',
      'To: "Doe, Jane" <jane@dest.test>, bob@dest.test (Bob)',
      'Cc: team: carol@dest.test,',
      '  dave@dest.test;',
      'Bcc: hidden@dest.test,',
      '\tsecret@dest.test',
      'Subject: -t',
      '',
      'Bcc: this line is body, not a header',
      '',
    ].join('\n');
    const r = await send(['-t', '-oi', '-f', 'app@source.test', '--server', `127.0.0.1:${server.port}`, 'extra@dest.test'], input);
    assert.equal(r.code, 0, r.stderr);
    const m = await last();
    assert.deepEqual(m.recipients, ['extra@dest.test', 'jane@dest.test', 'bob@dest.test', 'carol@dest.test', 'dave@dest.test', 'hidden@dest.test', 'secret@dest.test']);
    assert.equal(m.body.toString(), [
      'From: App <app@source.test>',
      'To: "Doe, Jane" <jane@dest.test>, bob@dest.test (Bob)',
      'Cc: team: carol@dest.test,',
      '  dave@dest.test;',
      'Subject: -t',
      '',
      'Bcc: this line is body, not a header',
      '',
    ].join('\r\n'));
  });

  it('finds the server from the same configuration serve reads (POSTWIRE_LISTEN), with the null sender', async () => {
    const r = await send(['-f', '<>', 'one@dest.test'], 'Subject: env\n\nx\n', { POSTWIRE_LISTEN: `127.0.0.1:${server.port}` });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await last()).sender, '');
  });

  it('a 5xx recipient: a clear error, exit 1, nothing sent', async () => {
    const before = sink.transactions.length;
    const r = await send(['-f', 'app@source.test', '--server', `127.0.0.1:${sink.port}`, 'ok@dest.test', 'reject-1@dest.test'], 'Subject: x\n\nx\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^postwire send: RCPT TO:<reject-1@dest\.test>: 550 5\.1\.1 .*; the message was not sent\n$/);
    assert.equal(sink.transactions.length, before, 'no DATA was sent');
  });

  it('a 4xx recipient: exit 75 (EX_TEMPFAIL), so the caller tries again later', async () => {
    const r = await send(['-f', 'app@source.test', '--server', `127.0.0.1:${sink.port}`, 'tempfail-rcpt-once-1@dest.test'], 'Subject: x\n\nx\n');
    assert.equal(r.code, 75);
    assert.match(r.stderr, /RCPT TO:<tempfail-rcpt-once-1@dest\.test>: 451 /);
  });

  it('usage errors exit 2; no server exits 1', async () => {
    const none = await send(['--server', `127.0.0.1:${server.port}`], 'Subject: x\n\nx\n');
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^postwire send: no recipients/);
    const bad = await send(['-x', 'a@b.test'], '');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^postwire send: unknown option -x\n/);
    const badServer = await send(['--server', 'nowhere', 'a@b.test'], '');
    assert.equal(badServer.code, 2);
    assert.match(badServer.stderr, /--server: "nowhere" is not HOST:PORT/);
    const closed = await send(['--server', '127.0.0.1:1', 'a@b.test'], 'x\n');
    assert.equal(closed.code, 1);
    assert.match(closed.stderr, /^postwire send: connect: cannot connect to 127\.0\.0\.1:1: .*ECONNREFUSED/);
  });
});
