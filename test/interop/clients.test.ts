/**
 * Interop: real SMTP clients submit to a real Postwire and the queue holds their messages intact.
 * - Python's smtplib (the standard library of the machine's python3): dot lines, a 2,000-octet
 *   line, BODY=8BITMIME, two recipients; a second transaction on the same connection.
 * - nodemailer (which pipelines, and uses 8BITMIME and SMTPUTF8 when offered): a raw message
 *   byte-exact, and a composed one with a UTF-8 address and an attachment.
 * - swaks (Debian's swaks, Perl), given the whole message so nothing of its own is added, with
 *   `--pipeline` (asserted on the wire, through a recording proxy: MAIL, every RCPT and DATA in one
 *   packet) and without it: the stored body minus our Received: is exactly the message, with lines
 *   '.', '..', '.x', a lone '.' mid-body and last, latin-1 and UTF-8 bytes, every octet 0x80–0xFF
 *   and a 998-octet line; the envelope is swaks' (sender, every recipient, 7BIT: swaks never sends
 *   BODY=).
 * Each program's tests skip with the reason when it is missing, and fail instead on CI
 * (test/support/interop.ts; scripts/ci-deps.sh installs swaks).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { recordingProxy } from '../support/delivery.js';
import { peerGate, runProcess } from '../support/interop.js';
import { startTestServer, withoutTraceHeader } from '../support/server.js';
import type { TestServer } from '../support/server.js';

const PYTHON = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import smtplib'], { stdio: 'ignore' }).status === 0);
const PYTHON_GATE = peerGate("Python's smtplib", PYTHON ? undefined : 'no python3 with smtplib on this machine');

const SWAKS = 'swaks';
function swaksUnavailable(): string | undefined {
  const probe = spawnSync(SWAKS, ['--version'], { stdio: 'ignore' });
  if (probe.error !== undefined) return `${SWAKS} not found (Debian's swaks package; scripts/ci-deps.sh installs it)`;
  if (probe.status !== 0) return `${SWAKS} --version exited ${probe.status}`;
  return undefined;
}
const SWAKS_GATE = peerGate('swaks', swaksUnavailable());

/**
 * A message for swaks, full of what breaks relays. Two of swaks' data rules shape it: a literal
 * backslash-n or a %TOKEN% would be rewritten (there are none), and a final CRLF "." CRLF is its
 * closing dot (so the file is in SMTP form: the message, then ".\r\n").
 */
function swaksMessage(tag: string, to: string): Buffer {
  return Buffer.concat([
    Buffer.from(
      `From: Swaks <swaks@client.test>\r\nTo: ${to}\r\nSubject: ${tag}\r\nDate: Sun, 29 Nov 2026 21:00:00 +0000\r\nMessage-ID: <${tag}@client.test>\r\n` +
        'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n' +
        '.\r\n..\r\n.x\r\n...\r\n. space\r\nFrom the start of a line\r\nbefore a lone dot\r\n.\r\nafter it\r\n',
      'latin1',
    ),
    Buffer.from('Grüße, ½ € 日本語 (UTF-8)\r\n.é dot then UTF-8\r\n', 'utf8'),
    Buffer.from('Gr\xfc\xdfe aus K\xf6ln (latin-1)\r\n', 'latin1'),
    Buffer.from([...Array.from({ length: 128 }, (_, i) => 0x80 + i), 0x0d, 0x0a]),
    Buffer.from(`${'w'.repeat(998)}\r\n.${'v'.repeat(997)}\r\n\r\n.\r\n`, 'latin1'),
  ]);
}

describe('interop: client libraries', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  it("Python's smtplib submits messages that arrive intact", { skip: PYTHON_GATE.skip }, async () => {
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

  for (const pipeline of [true, false]) {
    it(`swaks${pipeline ? ' --pipeline' : ''} submits a whole message that is stored byte-exact`, { skip: SWAKS_GATE.skip }, async () => {
      const tag = pipeline ? 'swaks-pipelined' : 'swaks-plain';
      const rcpts = [`${tag}-1@dest.test`, `${tag}-2@dest.test`];
      const message = swaksMessage(tag, rcpts.join(', '));
      const dir = await mkdtemp(join(tmpdir(), 'postwire-swaks-'));
      const proxy = await recordingProxy(server.port);
      try {
        const file = join(dir, 'message.eml');
        await writeFile(file, Buffer.concat([message, Buffer.from('.\r\n')]));
        const args = ['--server', `127.0.0.1:${proxy.port}`, '--helo', 'swaks.client.test', '--from', 'swaks@client.test', '--to', rcpts.join(','), '--data', `@${file}`];
        // Asynchronously: the server runs in this process, so a synchronous spawn would starve it.
        const run = await runProcess(SWAKS, pipeline ? [...args, '--pipeline'] : args);
        assert.equal(run.status, 0, `swaks failed (${run.status}):\n${run.stdout}\n${run.stderr}`);
        assert.match(run.stdout, /<- {2}250 2\.0\.0 Ok: queued as /);

        const stored = (await server.messages()).filter((m) => m.recipients.some((r) => r.address === rcpts[0]));
        assert.equal(stored.length, 1);
        const [got] = stored;
        assert.ok(got);
        assert.equal(got.envelope.sender, 'swaks@client.test');
        assert.deepEqual(got.recipients.map((r) => r.address), rcpts);
        assert.equal(got.envelope.body, '7BIT', 'swaks declares no BODY=');
        const body = withoutTraceHeader(got.body);
        assert.equal(body.length, message.length, 'same length');
        assert.ok(body.equals(message), 'byte-exact');

        // On the wire: swaks dot-stuffed, and with --pipeline sent MAIL, both RCPTs and DATA in one packet.
        const [packets = []] = proxy.perConnection();
        const wire = Buffer.concat(packets).toString('latin1');
        const dataAt = wire.indexOf('\r\nDATA\r\n') + '\r\nDATA\r\n'.length;
        const payload = wire.slice(dataAt, wire.indexOf('\r\n.\r\n', dataAt) + '\r\n.\r\n'.length);
        assert.equal(payload, `${message.toString('latin1').replace(/(^|\r\n)\./g, '$1..')}.\r\n`, 'swaks sent the message dot-stuffed');
        const batched = packets.some((p) => /^MAIL FROM:<[^\r]*>\r\nRCPT TO:<[^\r]*>\r\nRCPT TO:<[^\r]*>\r\nDATA\r\n$/.test(p.toString('latin1')));
        assert.equal(batched, pipeline, pipeline ? 'swaks pipelined' : 'swaks waited for each reply');
      } finally {
        await proxy.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
