/**
 * One connection to one sink: the body arrives byte-exact by DATA and by BDAT (pipelined and
 * lock-step) at every chunking, bare newlines never leave, the byte-count guard stops a short or
 * long spool before end-of-data, step timers fire from the table, greeting failures are facts,
 * and long lines are wrapped after the meter or refused before MAIL.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { systemClock } from '../util/index.js';
import { startFakeSmtp } from '../../test/fakes/fake-smtp-server.js';
import { closedPort, dotHeavyBody, makeJob, mortalPeer, rawServer, recordingProxy, smallBody, waitFor } from '../../test/support/delivery.js';
import type { PeerDeath } from '../../test/support/delivery.js';
import { openConnection, type ConnectionOptions, type DeliveryJob, type SmtpConnection } from './connection.js';
import { outboundMessage } from './agent.js';
import { classify, classifyTransaction } from './outcome.js';
import type { RouteHost } from './mx.js';

const options: ConnectionOptions = { hostname: 'relay.test', clock: systemClock };
const host = (port: number): RouteHost => ({ name: 'mx1.test', address: '127.0.0.1', port, preference: 10 });

async function open(port: number, o: ConnectionOptions = options): Promise<SmtpConnection> {
  const r = await openConnection(host(port), o);
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.fact));
  return r.connection;
}

async function sendOne(c: SmtpConnection, job: DeliveryJob) {
  const result = await c.send(job, outboundMessage(job));
  return { result, outcomes: classifyTransaction(result.facts) };
}

describe('delivery/connection', () => {
  it('DATA: dot-heavy body arrives byte-exact whatever the spool chunking', async () => {
    const sink = await startFakeSmtp();
    try {
      const body = smallBody('dots');
      const c = await open(sink.port);
      for (const sizes of [[1], [2], [3], [5, 1, 7], [4096]]) {
        const { outcomes } = await sendOne(c, makeJob(body, ['bob@dst.test'], { sizes }));
        assert.deepEqual(outcomes.map((o) => o.kind), ['delivered']);
      }
      await c.quit();
      assert.equal(sink.delivered.length, 5);
      for (const t of sink.delivered) assert.ok(t.data.equals(body), JSON.stringify(t.data.toString('latin1')));
      assert.ok(sink.delivered.every((t) => t.via === 'DATA'));
    } finally {
      await sink.close();
    }
  });

  it('DATA: a body without a final CRLF and an empty body', async () => {
    const sink = await startFakeSmtp();
    try {
      const c = await open(sink.port);
      const noEol = Buffer.from('Subject: x\r\n\r\nlast line', 'latin1');
      await sendOne(c, makeJob(noEol, ['bob@dst.test']));
      await sendOne(c, makeJob(Buffer.alloc(0), ['bob@dst.test']));
      await c.quit();
      assert.equal(sink.delivered.length, 2);
      // The terminator needs a line end first: CRLF is added to an unterminated last line.
      assert.equal(sink.delivered[0]?.data.toString('latin1'), 'Subject: x\r\n\r\nlast line\r\n');
      assert.equal(sink.delivered[1]?.data.length, 0);
    } finally {
      await sink.close();
    }
  });

  it('DATA: the body\'s last chunk and end-of-data leave in one write (a one-chunk body: two writes per delivery)', async () => {
    const sink = await startFakeSmtp();
    const proxy = await recordingProxy(sink.port);
    try {
      const body = smallBody('one write');
      const stuffed = body.toString('latin1').replace(/(^|\r\n)\./g, '$1..');
      const c = await open(proxy.port);
      await sendOne(c, makeJob(body, ['bob@dst.test'])); // one spool chunk
      await sendOne(c, makeJob(body, ['carol@dst.test'], { sizes: [8] })); // four chunks, the last 8 octets
      await c.quit();
      assert.equal(sink.delivered.length, 2);
      // Each packet the proxy read is one of our writes: each was made after the reply to the one
      // before (nothing to coalesce), and none is large enough for loopback to split.
      const packets = (proxy.perConnection()[0] ?? []).map((p) => p.toString('latin1'));
      const mail = packets.findIndex((p) => p.startsWith('MAIL FROM:'));
      assert.match(packets[mail] ?? '', /^MAIL FROM:<alice@src\.test>[^\r]*\r\nRCPT TO:<bob@dst\.test>\r\nDATA\r\n$/, 'MAIL, RCPT and DATA in one write');
      assert.equal(packets[mail + 1], `${stuffed}.\r\n`, 'the whole body and end-of-data in the next write');
      assert.match(packets[mail + 2] ?? '', /^MAIL FROM:/, 'nothing else in between');
      const end = packets.length - 1 - [...packets].reverse().findIndex((p) => p.endsWith('\r\n.\r\n'));
      assert.ok(end > mail + 2);
      assert.ok(packets[end]?.endsWith('plain\r\n.\r\n') && packets[end] !== '.\r\n', `the last chunk goes with end-of-data: ${JSON.stringify(packets[end])}`);
    } finally {
      await proxy.close();
      await sink.close();
    }
  });

  for (const pipelining of [true, false]) {
    it(`BDAT${pipelining ? ' pipelined' : ' lock-step'}: byte-exact, chunk sizes declared right`, async () => {
      const sink = await startFakeSmtp({ extensions: [...(pipelining ? ['PIPELINING'] : []), 'CHUNKING', '8BITMIME'] });
      try {
        const body = dotHeavyBody(300_000);
        const c = await open(sink.port, { ...options, chunkSize: 10_000 });
        const { outcomes, result } = await sendOne(c, makeJob(body, ['bob@dst.test', 'carol@dst.test'], { sizes: [3, 7777, 65_536] }));
        assert.deepEqual(outcomes.map((o) => o.kind), ['delivered', 'delivered']);
        assert.equal(result.mode, 'bdat');
        assert.equal(result.bodyOctets, body.length);
        // An empty body is BDAT 0 LAST.
        const empty = await sendOne(c, makeJob(Buffer.alloc(0), ['bob@dst.test']));
        assert.deepEqual(empty.outcomes.map((o) => o.kind), ['delivered']);
        await c.quit();
        assert.equal(sink.delivered.length, 2);
        assert.equal(sink.delivered[0]?.via, 'BDAT');
        assert.ok(sink.delivered[0]?.data.equals(body));
        assert.equal(sink.delivered[1]?.data.length, 0);
      } finally {
        await sink.close();
      }
    });
  }

  it('bare CR and LF in the spool never reach the peer (invariant 4), by DATA or BDAT', async () => {
    for (const extensions of [['PIPELINING'], ['PIPELINING', 'CHUNKING']]) {
      const sink = await startFakeSmtp({ extensions });
      try {
        const c = await open(sink.port);
        const body = Buffer.from('Subject: x\r\n\r\na\n.\nMAIL FROM:<evil@x>\rb\r\n', 'latin1');
        await sendOne(c, makeJob(body, ['bob@dst.test'], { sizes: [1] }));
        await c.quit();
        assert.equal(sink.delivered.length, 1);
        assert.equal(sink.delivered[0]?.data.toString('latin1'), 'Subject: x\r\n\r\na\r\n.\r\nMAIL FROM:<evil@x>\r\nb\r\n');
        assert.equal(sink.transactions.length, 1, 'nothing smuggled as a second transaction');
      } finally {
        await sink.close();
      }
    }
  });

  for (const extensions of [['PIPELINING'], ['PIPELINING', 'CHUNKING']]) {
    const via = extensions.includes('CHUNKING') ? 'BDAT' : 'DATA';
    it(`${via}: a spool one byte short is a framing fault before end-of-data; nothing delivered`, async () => {
      const sink = await startFakeSmtp({ extensions });
      try {
        const body = dotHeavyBody(200_000);
        const c = await open(sink.port);
        const job = makeJob(body, ['bob@dst.test'], { openBody: () => (async function* () { yield body.subarray(0, body.length - 1); })() });
        const { outcomes, result } = await sendOne(c, job);
        assert.deepEqual(outcomes.map((o) => o.kind), ['held']);
        assert.match(result.framingFault ?? '', new RegExp(`read ${body.length - 1} octets from the spool, ${body.length} were accepted`));
        await c.closed;
        assert.equal(sink.delivered.length, 0);
      } finally {
        await sink.close();
      }
    });

    it(`${via}: a spool longer than accepted stops at once; nothing delivered`, async () => {
      const sink = await startFakeSmtp({ extensions });
      try {
        const body = smallBody();
        const c = await open(sink.port);
        const longer = Buffer.concat([body, Buffer.from('extra\r\n')]);
        const job = makeJob(longer, ['bob@dst.test'], { size: body.length, sizes: [4] });
        const { outcomes, result } = await sendOne(c, job);
        assert.deepEqual(outcomes.map((o) => o.kind), ['held']);
        assert.match(result.framingFault ?? '', /holds more than/);
        await c.closed;
        assert.equal(sink.delivered.length, 0);
      } finally {
        await sink.close();
      }
    });
  }

  it('DATA: a spool one byte short: the held last chunk and end-of-data never reach the peer', async () => {
    const sink = await startFakeSmtp();
    const proxy = await recordingProxy(sink.port);
    try {
      const body = smallBody(); // its last line, 'plain', is in the last 8-octet chunk only
      const short = body.subarray(0, body.length - 1);
      const c = await open(proxy.port);
      const job = makeJob(body, ['bob@dst.test'], { sizes: [8], openBody: () => (async function* () { for (let at = 0; at < short.length; at += 8) yield short.subarray(at, at + 8); })() });
      const { outcomes } = await sendOne(c, job);
      assert.deepEqual(outcomes.map((o) => o.kind), ['held']);
      await c.closed;
      // Our writes arrive in order before the FIN: once the first chunk is in and a moment has
      // passed, whatever else we wrote is in too.
      await waitFor(() => proxy.sent().includes('Subject: x'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const sent = proxy.sent();
      assert.ok(!sent.includes('plain'), 'the last chunk was held, then dropped with the connection');
      assert.ok(!sent.includes('\r\n.\r\n'), 'no end-of-data');
      assert.equal(sink.delivered.length, 0);
    } finally {
      await proxy.close();
      await sink.close();
    }
  });

  it('a spool read error ends the attempt as deferred, with the error noted; nothing delivered', async () => {
    const sink = await startFakeSmtp();
    try {
      const c = await open(sink.port);
      const job = makeJob(smallBody(), ['bob@dst.test'], {
        openBody: () =>
          (async function* () {
            yield Buffer.from('Subject: x\r\n');
            throw Object.assign(new Error('disk on fire'), { code: 'EIO' });
          })(),
      });
      const { outcomes, result } = await sendOne(c, job);
      assert.deepEqual(outcomes.map((o) => o.kind), ['deferred']);
      assert.match(result.spoolError ?? '', /EIO disk on fire/);
      await c.closed;
      assert.equal(sink.delivered.length, 0);
    } finally {
      await sink.close();
    }
  });

  // What the agent may run again elsewhere (an unprobed reused connection found dead): only a
  // transaction the peer decided nothing about, with no body byte written.
  const deaths: ReadonlyArray<{ at: string; death: PeerDeath; lost: boolean }> = [
    { at: 'MAIL', death: 'fin', lost: true },
    { at: 'MAIL', death: '421', lost: true },
    { at: 'RCPT', death: 'fin', lost: false },
    { at: 'RCPT', death: '421', lost: false },
    { at: 'DATA', death: 'fin', lost: false },
  ];
  for (const { at, death, lost } of deaths) {
    it(`lostBeforeFirstReply: ${lost ? 'set' : 'not set'} when the peer leaves (${death}) at ${at}`, async () => {
      const peer = await mortalPeer((_c, line) => (line.startsWith(at) ? death : undefined));
      try {
        const c = await open(peer.port);
        const { result, outcomes } = await sendOne(c, makeJob(smallBody('lost'), ['a@dst.test', 'b@dst.test']));
        assert.equal(result.lostBeforeFirstReply, lost ? true : undefined);
        assert.equal(result.mode, 'none', 'no body was started');
        assert.equal(result.bodyOctets, 0);
        assert.ok(outcomes.every((o) => o.kind === 'deferred'));
        await c.closed;
        assert.ok(!peer.connections[0]?.received.includes('Subject: lost'), 'no body byte was written');
      } finally {
        await peer.close();
      }
    });
  }

  it('lostBeforeFirstReply: not set once the body started (connection dropped mid-DATA) nor for a refused MAIL', async () => {
    const sink = await startFakeSmtp();
    try {
      const c = await open(sink.port);
      const { result } = await sendOne(c, makeJob(dotHeavyBody(300_000), ['drop-in-data-once-a@dst.test']));
      assert.equal(result.lostBeforeFirstReply, undefined);
      assert.equal(result.mode, 'data');
      await c.closed;
    } finally {
      await sink.close();
    }
    const refusing = await rawServer((s) => {
      s.write('220 peer.test\r\n');
      s.on('data', (d: Buffer) => {
        const text = d.toString('latin1');
        if (text.startsWith('EHLO')) s.write('250 peer.test\r\n');
        else if (text.startsWith('MAIL')) s.write('451 4.3.0 try later\r\n');
        else if (text.startsWith('QUIT')) s.end('221 bye\r\n');
        else s.write('250 ok\r\n');
      });
    });
    try {
      const c = await open(refusing.port);
      const { result } = await sendOne(c, makeJob(smallBody(), ['a@dst.test']));
      assert.equal(result.lostBeforeFirstReply, undefined);
      await c.quit();
    } finally {
      await refusing.close();
    }
  });

  it('a refused connection is an interrupted fact on step connect', async () => {
    const r = await openConnection(host(await closedPort()), options);
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.reached, false);
    assert.equal(r.fact.kind, 'interrupted');
    const o = classify(r.fact, 0);
    assert.equal(o.kind, 'deferred');
    assert.equal(o.scope, 'destination');
    assert.equal(o.enhanced, '4.4.1');
    assert.match(o.reply, /ECONNREFUSED/);
  });

  it('a 421 or 554 greeting is the session fact, scope destination', async () => {
    for (const banner of ['421 4.3.2 too busy', '554 5.7.1 go away']) {
      const peer = await rawServer((s) => {
        s.write(`${banner}\r\n`);
        s.on('data', (d: Buffer) => {
          if (d.toString().startsWith('QUIT')) s.end('221 bye\r\n');
        });
      });
      try {
        const r = await openConnection(host(peer.port), options);
        assert.equal(r.ok, false);
        if (r.ok) continue;
        assert.equal(r.reached, true);
        const o = classify(r.fact, 0);
        assert.equal(o.scope, 'destination');
        assert.equal(o.reply, banner);
        await r.connection?.closed;
      } finally {
        await peer.close();
      }
    }
  });

  it('a silent peer times out on the banner step from the table override', async () => {
    const peer = await rawServer(() => undefined);
    try {
      const start = Date.now();
      const r = await openConnection(host(peer.port), { ...options, timeouts: { banner: 50 } });
      assert.ok(Date.now() - start < 2_000);
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.deepEqual({ kind: r.fact.kind, step: r.fact.kind === 'interrupted' ? r.fact.cause : '' }, { kind: 'interrupted', step: 'timeout' });
      assert.match(classify(r.fact, 0).reply, /timed out while waiting for the greeting/);
    } finally {
      await peer.close();
    }
  });

  it('counts lines over 998 octets while streaming', async () => {
    const sink = await startFakeSmtp();
    try {
      const body = Buffer.from(`Subject: long\r\n\r\n${'a'.repeat(998)}\r\n${'b'.repeat(999)}\r\n${'c'.repeat(3000)}`, 'latin1');
      const c = await open(sink.port);
      const { result } = await sendOne(c, makeJob(body, ['bob@dst.test'], { sizes: [997, 2, 5] }));
      assert.equal(result.longLines, 2);
      await c.quit();
    } finally {
      await sink.close();
    }
  });

  it('wrap: a dot-led long line at awkward chunkings; the meter counts and hashes the spool bytes', async () => {
    const sink = await startFakeSmtp();
    try {
      const body = Buffer.from(`Subject: w\r\n\r\n.${'d'.repeat(2500)}\r\n..\r\n${'e'.repeat(998)}\r\n`, 'latin1');
      const c = await open(sink.port);
      for (const sizes of [[1], [998, 1, 1], [999, 2], [65_536]]) {
        const { result, outcomes } = await sendOne(c, makeJob(body, ['bob@dst.test'], { sizes }));
        assert.deepEqual(outcomes.map((o) => o.kind), ['delivered']);
        assert.equal(result.longLineAction, 'wrapped');
        assert.equal(result.wrapBreaks, 2); // 2,501 octets: 998 + 997 + 506
        assert.equal(result.longLines, 1);
        assert.equal(result.bodyOctets, body.length, 'spool octets, before the wrap');
        assert.equal(result.sha256, createHash('sha256').update(body).digest('hex'));
      }
      await c.quit();
      assert.equal(sink.delivered.length, 4);
      for (const t of sink.delivered) {
        const text = t.data.toString('latin1');
        assert.ok(text.split('\r\n').every((l) => l.length <= 998));
        assert.equal(text.split('\r\n ').join(''), body.toString('latin1'));
      }
    } finally {
      await sink.close();
    }
  });

  it('bounce: the pre-scan refuses before MAIL and leaves the connection ready', async () => {
    const sink = await startFakeSmtp();
    try {
      const c = await open(sink.port, { ...options, longLines: 'bounce' });
      const job = makeJob(Buffer.from(`Subject: b\r\n\r\n${'b'.repeat(999)}`, 'latin1'), ['bob@dst.test', 'carol@dst.test'], { sizes: [500] });
      const { result, outcomes } = await sendOne(c, job);
      assert.deepEqual(outcomes.map((o) => o.kind), ['bounced', 'bounced']);
      assert.deepEqual({ mode: result.mode, action: result.longLineAction, local: result.local, bodyOctets: result.bodyOctets }, { mode: 'none', action: 'refused', local: true, bodyOctets: 0 });
      assert.equal(c.ready, true);
      assert.equal(c.transactions, 0);
      const next = await sendOne(c, makeJob(smallBody(), ['bob@dst.test']));
      assert.deepEqual(next.outcomes.map((o) => o.kind), ['delivered']);
      await c.quit();
      assert.equal(sink.transactions.length, 1);
    } finally {
      await sink.close();
    }
  });
});
