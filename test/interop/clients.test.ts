/**
 * Interop: real SMTP client libraries submit to a real Postwire and the queue holds their
 * messages intact. Python's smtplib (the standard library of the machine's python3) and
 * nodemailer (which pipelines, and uses 8BITMIME and SMTPUTF8 when offered).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import nodemailer from 'nodemailer';
import { startTestServer, withoutTraceHeader } from '../support/server.js';
import type { TestServer } from '../support/server.js';

const PYTHON = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import smtplib'], { stdio: 'ignore' }).status === 0);

function runProcess(cmd: string, args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

describe('interop: client libraries', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  it("Python's smtplib submits messages that arrive intact", { skip: PYTHON ? false : 'no python3 with smtplib on this machine' }, async () => {
    const before = (await server.messages()).length;
    const script = String.raw`
import smtplib, sys
port = int(sys.argv[1])
msg = ("From: py@client.test\r\nTo: a@dest.test\r\nSubject: from smtplib\r\n\r\n"
       ".leading dot line\r\n..two dots\r\n.\r\nplain line\r\n" + "x" * 2000 + "\r\n").encode("latin-1")
with smtplib.SMTP("127.0.0.1", port, local_hostname="py.client.test") as s:
    s.ehlo()
    assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("size")
    refused = s.sendmail("py@client.test", ["a@dest.test", "b@dest.test"], msg, mail_options=["BODY=8BITMIME"])
    assert refused == {}, refused
    refused = s.sendmail("py@client.test", ["c@dest.test"], "Subject: second\r\n\r\nhello\r\n")
    assert refused == {}, refused
print("sent")
`;
    // Asynchronously: the server runs in this process, so a synchronous spawn would starve it.
    const run = await runProcess(PYTHON as string, ['-c', script, String(server.port)]);
    assert.equal(run.status, 0, `python failed: ${run.stderr}`);
    const stored = (await server.messages()).slice(before);
    assert.equal(stored.length, 2);
    const [first, second] = stored;
    assert.deepEqual(first?.recipients.map((r) => r.address), ['a@dest.test', 'b@dest.test']);
    assert.equal(first?.envelope.body, '8BITMIME');
    assert.equal(
      withoutTraceHeader(first!.body).toString('latin1'),
      `From: py@client.test\r\nTo: a@dest.test\r\nSubject: from smtplib\r\n\r\n.leading dot line\r\n..two dots\r\n.\r\nplain line\r\n${'x'.repeat(2000)}\r\n`,
    );
    assert.equal(withoutTraceHeader(second!.body).toString('latin1'), 'Subject: second\r\n\r\nhello\r\n');
  });

  it('nodemailer submits a raw message and a composed one, intact', async () => {
    const before = (await server.messages()).length;
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true, name: 'nm.client.test' });
    const raw = Buffer.from('From: nm@client.test\r\nTo: d@dest.test\r\nSubject: raw\r\n\r\n.dot first\r\nsecond line \xe9\r\n', 'latin1');
    const info1 = await transport.sendMail({ envelope: { from: 'nm@client.test', to: ['d@dest.test'] }, raw });
    assert.match(info1.response, /^250 2\.0\.0 Ok: queued as /);
    const info2 = await transport.sendMail({
      from: 'nm@client.test',
      to: 'ü@dëst.test',
      subject: 'Grüße',
      text: 'Hällo\n.\nwith a lone dot line\n',
      attachments: [{ filename: 'data.bin', content: Buffer.alloc(3000, 7) }],
    });
    assert.match(info2.response, /queued as/);
    transport.close();
    const stored = (await server.messages()).slice(before);
    assert.equal(stored.length, 2);
    assert.ok(withoutTraceHeader(stored[0]!.body).equals(raw), 'raw message stored byte-exact');
    const composed = withoutTraceHeader(stored[1]!.body).toString('utf8');
    assert.equal(stored[1]!.envelope.smtputf8, true, 'nodemailer used SMTPUTF8 for the UTF-8 address');
    assert.deepEqual(stored[1]!.recipients.map((r) => r.address), ['ü@dëst.test']);
    assert.match(composed, /Subject: /);
    assert.match(composed, /filename=data\.bin/);
    assert.match(composed, /Content-Transfer-Encoding: base64/);
  });
});
