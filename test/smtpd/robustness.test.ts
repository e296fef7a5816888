/**
 * The server keeps serving everyone while one client misbehaves: a silent client is timed out
 * with 421 while a second client completes a transaction; a burst of 300 simultaneous
 * connections is greeted and served; connection limits answer 421 4.7.0.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { RawClient } from '../support/raw-client.js';
import { startTestServer } from '../support/server.js';

async function sendOne(port: number, rcpt: string): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    assert.equal((await c.reply()).code, 220);
    assert.equal((await c.command('EHLO client.test')).code, 250);
    assert.equal((await c.command('MAIL FROM:<app@client.test>')).code, 250);
    assert.equal((await c.command(`RCPT TO:<${rcpt}>`)).code, 250);
    assert.equal((await c.command('DATA')).code, 354);
    const r = await c.command(`Subject: ${rcpt}\r\n\r\nhello\r\n.`);
    assert.equal(r.code, 250, r.text);
    assert.equal((await c.command('QUIT')).code, 221);
    return r.text;
  } finally {
    c.close();
  }
}

describe('robustness', () => {
  it('times out a silent client with 421 while serving another', async () => {
    const server = await startTestServer(['--command-timeout', '400ms', '--data-timeout', '400ms']);
    try {
      const silent = await RawClient.connect(server.port);
      assert.equal((await silent.reply()).code, 220);
      const inData = await RawClient.connect(server.port);
      assert.equal((await inData.reply()).code, 220);
      await inData.command('EHLO x.test');
      await inData.command('MAIL FROM:<a@x.test>');
      await inData.command('RCPT TO:<b@y.test>');
      assert.equal((await inData.command('DATA')).code, 354);
      await inData.write('Subject: never finished\r\n');
      const served = await sendOne(server.port, 'other@dest.test');
      assert.match(served, /queued as/);
      const timeout = await silent.reply(5_000);
      assert.equal(timeout.code, 421);
      assert.match(timeout.text, /^4\.4\.2/);
      await silent.waitClosed();
      assert.equal((await inData.reply(5_000)).code, 421);
      await inData.waitClosed();
      const stored = await server.messages();
      assert.deepEqual(stored.map((m) => m.recipients[0]?.address), ['other@dest.test'], 'the unfinished message is not queued');
    } finally {
      await server.stop();
    }
  });

  it('greets and serves a burst of 300 simultaneous connections', async () => {
    const server = await startTestServer();
    try {
      const clients = await Promise.all(Array.from({ length: 300 }, () => RawClient.connect(server.port)));
      const greetings = await Promise.all(clients.map((c) => c.reply()));
      assert.ok(greetings.every((g) => g.code === 220), 'every connection is greeted with 220');
      await Promise.all(
        clients.map(async (c, i) => {
          await c.command('EHLO burst.test');
          assert.equal((await c.command('MAIL FROM:<burst@client.test>')).code, 250);
          assert.equal((await c.command(`RCPT TO:<r${i}@dest.test>`)).code, 250);
          assert.equal((await c.command('DATA')).code, 354);
          assert.equal((await c.command(`Subject: ${i}\r\n\r\nburst\r\n.`)).code, 250);
          assert.equal((await c.command('QUIT')).code, 221);
          c.close();
        }),
      );
      assert.equal((await server.messages()).length, 300);
    } finally {
      await server.stop();
    }
  });

  it('refuses connections over --max-connections with 421 4.7.0', async () => {
    const server = await startTestServer(['--max-connections', '2']);
    try {
      const a = await RawClient.connect(server.port);
      const b = await RawClient.connect(server.port);
      assert.equal((await a.reply()).code, 220);
      assert.equal((await b.reply()).code, 220);
      const c = await RawClient.connect(server.port);
      const refused = await c.reply();
      assert.equal(refused.code, 421);
      assert.match(refused.text, /^4\.7\.0/);
      await c.waitClosed();
      a.close();
      await a.waitClosed();
      await new Promise((r) => setTimeout(r, 50));
      assert.match(await sendOne(server.port, 'after@dest.test'), /queued as/);
      b.close();
    } finally {
      await server.stop();
    }
  });

  it('limits connections per client IP outside the exempt networks', async () => {
    // 127.0.0.1 is not in 10.0.0.0/8, so the per-IP limit applies to it here.
    const server = await startTestServer(['--max-connections-per-ip', '2', '--limits-exempt', '10.0.0.0/8']);
    try {
      const a = await RawClient.connect(server.port);
      const b = await RawClient.connect(server.port);
      assert.equal((await a.reply()).code, 220);
      assert.equal((await b.reply()).code, 220);
      const c = await RawClient.connect(server.port);
      assert.equal((await c.reply()).code, 421);
      a.close();
      b.close();
    } finally {
      await server.stop();
    }
  });

  it('stops reading from a pipelining client that does not read its replies, and loses nothing', { timeout: 60_000 }, async () => {
    const server = await startTestServer();
    try {
      const commands = 1_000_000;
      const socket = connect({ port: server.port, host: '127.0.0.1' });
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.pause();
      // Many small writes, so the unsent byte count moves as soon as the server reads anything.
      const block = Buffer.from('NOOP\r\n'.repeat(10_000));
      for (let i = 0; i < commands / 10_000; i++) socket.write(block);
      // The server must stop reading and stay stopped: our unsent bytes settle above zero.
      let last = -1;
      let stableSince = Date.now();
      while (Date.now() - stableSince < 2_000) {
        await new Promise((r) => setTimeout(r, 100));
        assert.ok(socket.writableLength > 0, 'the server read every command although no reply was read');
        if (socket.writableLength !== last) {
          last = socket.writableLength;
          stableSince = Date.now();
        }
      }
      let replies = -1; // the 220 greeting is not a NOOP reply
      let tail = '';
      await new Promise<void>((resolve, reject) => {
        socket.on('data', (chunk: Buffer) => {
          const text = tail + chunk.toString('latin1');
          const lines = text.split('\r\n');
          tail = lines.pop() ?? '';
          replies += lines.length;
          if (replies >= commands) resolve();
        });
        socket.on('error', reject);
        socket.resume();
      });
      assert.equal(replies, commands, 'every pipelined command was answered, in order, once');
      socket.destroy();
    } finally {
      await server.stop();
    }
  });
});
