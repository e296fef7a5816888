/**
 * SMTP smuggling (DESIGN.md invariant 4): end-of-data is <CRLF>.<CRLF> and nothing else. Each
 * bare-CR / bare-LF "end" below is followed by a complete second transaction and only then the
 * real end. The server must store exactly one message (normalize) or refuse it (reject), and
 * must never answer the smuggled commands: the only replies after DATA are the one for the real
 * end-of-data and the one for QUIT.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../support/raw-client.js';
import { startTestServer, withoutTraceHeader } from '../support/server.js';
import type { TestServer } from '../support/server.js';

const VARIANTS: ReadonlyArray<[string, string]> = [
  ['<LF>.<LF>', '\n.\n'],
  ['<LF>.<CR><LF>', '\n.\r\n'],
  ['<CR><LF>.<LF>', '\r\n.\n'],
  ['<CR>.<CR>', '\r.\r'],
  ['<CR><LF>.<CR>', '\r\n.\r'],
  ['<CR>.<LF>', '\r.\n'],
  ['<LF>.<CR>', '\n.\r'],
];

const SMUGGLED = 'MAIL FROM:<attacker@evil.test>\r\nRCPT TO:<victim@bank.test>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nsecond message\r\n';

function hasBareNewline(body: Buffer): boolean {
  for (let i = 0; i < body.length; i++) {
    if (body[i] === 0x0d && body[i + 1] !== 0x0a) return true;
    if (body[i] === 0x0a && body[i - 1] !== 0x0d) return true;
  }
  return false;
}

async function smuggle(server: TestServer, fake: string, segmentation: 'one-packet' | 'bytewise'): Promise<{ dataReply: number; after: number[] }> {
  const c = await RawClient.connect(server.port);
  assert.equal((await c.reply()).code, 220);
  assert.equal((await c.command('EHLO client.test')).code, 250);
  assert.equal((await c.command('MAIL FROM:<sender@app.test>')).code, 250);
  assert.equal((await c.command('RCPT TO:<rcpt@dest.test>')).code, 250);
  assert.equal((await c.command('DATA')).code, 354);
  const payload = Buffer.from(`From: sender@app.test\r\nSubject: first\r\n\r\nfirst message${fake}${SMUGGLED}\r\n.\r\nQUIT\r\n`, 'latin1');
  if (segmentation === 'one-packet') await c.write(payload);
  else await c.writeSegments([...payload].map((b) => Uint8Array.of(b)));
  const dataReply = (await c.reply()).code;
  const rest: number[] = [];
  for (;;) {
    const r = await c.reply();
    rest.push(r.code);
    if (r.code === 221) break;
  }
  await c.waitClosed();
  return { dataReply, after: rest };
}

for (const policy of ['normalize', 'reject'] as const) {
  describe(`smuggling, --bare-newline ${policy}`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(['--bare-newline', policy]);
    });
    after(() => server.stop());

    for (const [name, fake] of VARIANTS) {
      for (const segmentation of ['one-packet', 'bytewise'] as const) {
        it(`${name} then a second transaction (${segmentation})`, async () => {
          const before = (await server.messages()).length;
          const { dataReply, after: replies } = await smuggle(server, fake, segmentation);
          assert.deepEqual(replies, [221], 'the smuggled MAIL/RCPT/DATA must never be answered');
          const stored = (await server.messages()).slice(before);
          if (policy === 'reject') {
            assert.equal(dataReply, 550);
            assert.equal(stored.length, 0);
            return;
          }
          assert.equal(dataReply, 250);
          assert.equal(stored.length, 1, 'exactly one message');
          const message = stored[0]!;
          assert.deepEqual(message.recipients.map((r) => r.address), ['rcpt@dest.test']);
          assert.equal(message.envelope.sender, 'sender@app.test');
          assert.equal(hasBareNewline(message.body), false, 'no bare CR or LF is stored');
          const body = withoutTraceHeader(message.body).toString('latin1');
          assert.ok(body.startsWith('From: sender@app.test\r\nSubject: first\r\n\r\nfirst message\r\n'), body);
          assert.ok(body.endsWith('second message\r\n\r\n'), 'the whole payload is one message body');
          assert.ok(body.includes('\r\nMAIL FROM:<attacker@evil.test>\r\n'), 'the smuggled lines are body text');
        });
      }
    }
  });
}
