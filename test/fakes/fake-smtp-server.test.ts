/**
 * The sink must itself be right before delivery tests trust it: DATA is un-stuffed exactly
 * whatever the segmentation, BDAT is stored as sent, and the magic addresses misbehave once.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../support/raw-client.js';
import { startFakeSmtp } from './fake-smtp-server.js';

describe('fake SMTP sink', () => {
  it('stores DATA un-stuffed, byte-exact at every segmentation', async () => {
    const sink = await startFakeSmtp();
    try {
      const message = Buffer.from('Subject: dots\r\n\r\n.\r\n..two\r\nplain\r\n.x\r\n', 'latin1');
      const wire = Buffer.from('Subject: dots\r\n\r\n..\r\n...two\r\nplain\r\n..x\r\n.\r\n', 'latin1');
      for (const size of [1, 2, 3, 5, 7, wire.length]) {
        const c = await RawClient.connect(sink.port);
        await c.reply();
        await c.command('EHLO t');
        await c.command('MAIL FROM:<a@b.test>');
        await c.command('RCPT TO:<x@y.test>');
        assert.equal((await c.command('DATA')).code, 354);
        const parts: Buffer[] = [];
        for (let i = 0; i < wire.length; i += size) parts.push(wire.subarray(i, i + size));
        await c.writeSegments(parts);
        assert.equal((await c.reply()).code, 250);
        c.close();
      }
      assert.equal(sink.delivered.length, 6);
      for (const t of sink.delivered) assert.ok(t.data.equals(message), JSON.stringify(t.data.toString('latin1')));
      const empty = await RawClient.connect(sink.port);
      await empty.reply();
      await empty.command('EHLO t');
      await empty.command('MAIL FROM:<a@b.test>');
      await empty.command('RCPT TO:<x@y.test>');
      await empty.command('DATA');
      assert.equal((await empty.command('.')).code, 250);
      assert.equal(sink.delivered[6]?.data.length, 0);
      empty.close();
    } finally {
      await sink.close();
    }
  });

  it('stores BDAT as sent and misbehaves on magic addresses', async () => {
    const sink = await startFakeSmtp({ extensions: ['PIPELINING', 'CHUNKING'] });
    try {
      const c = await RawClient.connect(sink.port);
      await c.reply();
      await c.command('EHLO t');
      await c.command('MAIL FROM:<a@b.test>');
      assert.equal((await c.command('RCPT TO:<tempfail-rcpt-once-1@y.test>')).code, 451);
      assert.equal((await c.command('RCPT TO:<tempfail-rcpt-once-1@y.test>')).code, 250);
      assert.equal((await c.command('RCPT TO:<reject-2@y.test>')).code, 550);
      await c.write('BDAT 5\r\n.a\r\nb');
      assert.equal((await c.reply()).code, 250);
      await c.write('BDAT 2 LAST\r\n\r\n');
      assert.equal((await c.reply()).code, 250);
      await c.command('MAIL FROM:<a@b.test>');
      await c.command('RCPT TO:<tempfail-data-once-3@y.test>');
      await c.command('DATA');
      assert.equal((await c.command('x\r\n.')).code, 451);
      c.close();
      assert.equal(sink.delivered.length, 1);
      assert.equal(sink.delivered[0]?.data.toString(), '.a\r\nb\r\n');
      assert.equal(sink.delivered[0]?.via, 'BDAT');
      assert.deepEqual(sink.delivered[0]?.rcpts, ['tempfail-rcpt-once-1@y.test']);
      assert.equal(sink.transactions.length, 2);
    } finally {
      await sink.close();
    }
  });
});
