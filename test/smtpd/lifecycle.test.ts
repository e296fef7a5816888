/**
 * Connection lifecycle at the edges: a client that half-closes after pipelining its whole
 * transaction still gets every answer and its message queued; a client that vanishes
 * mid-message leaves nothing behind (no row, no spill file); timers are re-armed by activity
 * and the DATA timer is its own; an early talker is answered only after the banner.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RawClient } from '../support/raw-client.js';
import { startTestServer, withoutTraceHeader } from '../support/server.js';

function collect(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => socket.end(payload));
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
}

describe('connection lifecycle', () => {
  it('answers a client that pipelines a transaction and half-closes at once (printf | nc)', async () => {
    const server = await startTestServer();
    try {
      const text = await collect(
        server.port,
        'EHLO nc.test\r\nMAIL FROM:<a@app.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\nSubject: nc\r\n\r\nhi\r\n.\r\nQUIT\r\n',
      );
      const codes = text.split('\r\n').filter((l) => / /.test(l.slice(3, 4))).map((l) => l.slice(0, 3));
      assert.deepEqual(codes, ['220', '250', '250', '250', '354', '250', '221']);
      const stored = await server.messages();
      assert.equal(stored.length, 1);
      assert.equal(withoutTraceHeader(stored[0]!.body).toString(), 'Subject: nc\r\n\r\nhi\r\n');
    } finally {
      await server.stop();
    }
  });

  it('a half-close in the middle of DATA queues nothing', async () => {
    const server = await startTestServer();
    try {
      const text = await collect(server.port, 'EHLO nc.test\r\nMAIL FROM:<a@app.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\nSubject: cut\r\n\r\nno end');
      assert.match(text, /354 /);
      assert.doesNotMatch(text, /queued as/);
      assert.equal((await server.messages()).length, 0);
    } finally {
      await server.stop();
    }
  });

  it('a client that vanishes mid-message leaves no row and no spill file', async () => {
    const server = await startTestServer();
    try {
      const c = await RawClient.connect(server.port);
      await c.reply();
      await c.command('EHLO gone.test');
      await c.command('MAIL FROM:<a@app.test>');
      await c.command('RCPT TO:<b@dest.test>');
      assert.equal((await c.command('DATA')).code, 354);
      // Past the 128 KiB inline limit, so the body has spilled to its own file.
      await c.write(`Subject: big\r\n\r\n${'y'.repeat(998)}\r\n`.repeat(400));
      await new Promise((r) => setTimeout(r, 200));
      c.socket.resetAndDestroy();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await server.messages()).length, 0);
      assert.deepEqual(await readdir(join(server.spool, 'bodies')), [], 'the spill file is removed');
      assert.match(await sendAndQuit(server.port), /queued as/, 'the server serves the next client');
    } finally {
      await server.stop();
    }
  });

  it('activity re-arms the command timer, and DATA has its own', async () => {
    const server = await startTestServer(['--command-timeout', '600ms', '--data-timeout', '300ms']);
    try {
      const c = await RawClient.connect(server.port);
      await c.reply();
      for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, 250));
        assert.equal((await c.command('NOOP')).code, 250, 'a talking client is not timed out');
      }
      await c.command('EHLO t.test');
      await c.command('MAIL FROM:<a@app.test>');
      await c.command('RCPT TO:<b@dest.test>');
      assert.equal((await c.command('DATA')).code, 354);
      const started = Date.now();
      const r = await c.reply(5_000);
      const waited = Date.now() - started;
      assert.equal(r.code, 421);
      assert.ok(waited < 550, `DATA silence ends after the data timeout, not the command timeout (${waited} ms)`);
    } finally {
      await server.stop();
    }
  });

  it('an early talker is answered only after the banner', async () => {
    const server = await startTestServer();
    try {
      const text = await collect(server.port, 'EHLO early.test\r\nQUIT\r\n');
      assert.ok(text.startsWith('220 '), text);
      assert.match(text, /\r\n250[- ]/);
      assert.match(text, /221 /);
    } finally {
      await server.stop();
    }
  });
});

async function sendAndQuit(port: number): Promise<string> {
  const c = await RawClient.connect(port);
  await c.reply();
  await c.command('EHLO next.test');
  await c.command('MAIL FROM:<a@app.test>');
  await c.command('RCPT TO:<b@dest.test>');
  await c.command('DATA');
  const r = await c.command('Subject: next\r\n\r\nok\r\n.');
  c.close();
  return r.text;
}
