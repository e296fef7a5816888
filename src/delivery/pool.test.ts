/**
 * Connection reuse through the agent: one session for several messages to one destination, no
 * RSET for a connection parked moments ago and RSET for one idle past probeAfterMs, QUIT on
 * close(), on the idle timeout and after maxReuse, and a pooled connection the peer closed
 * (while parked, at RSET, or just as we reuse it unprobed) is replaced without becoming a
 * delivery failure, a second copy, or an endless retry. A recording proxy in front of the sink
 * shows exactly what the client wrote.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../obs/index.js';
import { systemClock } from '../util/index.js';
import { startFakeSmtp } from '../../test/fakes/fake-smtp-server.js';
import { count, makeJob, makeRoute, mortalPeer, rawServer, recordingProxy, smallBody, waitFor } from '../../test/support/delivery.js';
import { createDeliveryAgent, type DeliveryAgentOptions } from './agent.js';
import { ConnectionPool } from './pool.js';

const base: DeliveryAgentOptions = { hostname: 'relay.test', clock: systemClock, log: silentLogger };
const kinds = (r: { outcomes: readonly { kind: string }[] }): string[] => r.outcomes.map((o) => o.kind);

describe('delivery/pool', () => {
  it('three messages to one destination share one session, no RSET for a connection parked moments ago; close() QUITs it', async () => {
    const sink = await startFakeSmtp();
    const proxy = await recordingProxy(sink.port);
    const agent = createDeliveryAgent(base);
    try {
      for (const tag of ['one', 'two', 'three']) {
        const r = await agent.deliver(makeRoute(proxy.port), makeJob(smallBody(tag), [`${tag}@dst.test`]));
        assert.deepEqual(kinds(r), ['delivered']);
      }
      assert.equal(sink.sessions, 1);
      assert.equal(sink.delivered.length, 3);
      assert.equal(count(proxy.sent(), 'RSET\r\n'), 0, 'no RSET probe within probeAfterMs');
      assert.equal(count(proxy.sent(), 'EHLO relay.test\r\n'), 1);
      assert.equal(count(proxy.sent(), 'QUIT\r\n'), 0);
      await agent.close();
      assert.equal(count(proxy.sent(), 'QUIT\r\n'), 1, 'close() QUITs the idle connection');
    } finally {
      await agent.close();
      await proxy.close();
      await sink.close();
    }
  });

  it('a connection idle longer than probeAfterMs answers RSET before reuse; one parked moments ago does not', async () => {
    const sink = await startFakeSmtp();
    const proxy = await recordingProxy(sink.port);
    const agent = createDeliveryAgent({ ...base, probeAfterMs: 30, idleTimeoutMs: 5_000 });
    try {
      const rsets = (): number => count(proxy.sent(), 'RSET\r\n');
      assert.deepEqual(kinds(await agent.deliver(makeRoute(proxy.port), makeJob(smallBody('one'), ['a@dst.test']))), ['delivered']);
      assert.deepEqual(kinds(await agent.deliver(makeRoute(proxy.port), makeJob(smallBody('two'), ['b@dst.test']))), ['delivered']);
      assert.equal(rsets(), 0, 'reused at once: not probed');
      await new Promise((resolve) => setTimeout(resolve, 80));
      assert.deepEqual(kinds(await agent.deliver(makeRoute(proxy.port), makeJob(smallBody('three'), ['c@dst.test']))), ['delivered']);
      assert.equal(rsets(), 1, 'idle past probeAfterMs: probed');
      assert.ok(proxy.sent().indexOf('RSET\r\n') < proxy.sent().indexOf('RCPT TO:<c@dst.test>'), 'the probe comes before the transaction');
      assert.deepEqual(kinds(await agent.deliver(makeRoute(proxy.port), makeJob(smallBody('four'), ['d@dst.test']))), ['delivered']);
      assert.equal(rsets(), 1, 'reused at once again: not probed');
      assert.equal(sink.sessions, 1);
      assert.equal(sink.delivered.length, 4);
    } finally {
      await agent.close();
      await proxy.close();
      await sink.close();
    }
  });

  it('a connection is reused after a failed transaction (the machine RSETs it)', async () => {
    const sink = await startFakeSmtp();
    const agent = createDeliveryAgent(base);
    try {
      assert.deepEqual(kinds(await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['reject-a@dst.test']))), ['bounced']);
      assert.deepEqual(kinds(await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['always-451-b@dst.test']))), ['deferred']);
      assert.deepEqual(kinds(await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['bob@dst.test']))), ['delivered']);
      assert.equal(sink.sessions, 1);
      assert.deepEqual(sink.delivered.map((t) => t.rcpts), [['bob@dst.test']]);
    } finally {
      await agent.close();
      await sink.close();
    }
  });

  it('idle connections are QUIT after idleTimeoutMs; the next message opens a new session', async () => {
    const sink = await startFakeSmtp();
    const proxy = await recordingProxy(sink.port);
    const agent = createDeliveryAgent({ ...base, idleTimeoutMs: 30 });
    try {
      await agent.deliver(makeRoute(proxy.port), makeJob(smallBody(), ['a@dst.test']));
      await waitFor(() => count(proxy.sent(), 'QUIT\r\n') === 1);
      await agent.deliver(makeRoute(proxy.port), makeJob(smallBody(), ['b@dst.test']));
      assert.equal(sink.sessions, 2);
      assert.equal(sink.delivered.length, 2);
    } finally {
      await agent.close();
      await proxy.close();
      await sink.close();
    }
  });

  it('a connection retires after maxReusePerConnection transactions', async () => {
    const sink = await startFakeSmtp();
    const agent = createDeliveryAgent({ ...base, maxReusePerConnection: 2 });
    try {
      for (let i = 0; i < 5; i++) await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), [`r${i}@dst.test`]));
      assert.equal(sink.delivered.length, 5);
      assert.equal(sink.sessions, 3);
    } finally {
      await agent.close();
      await sink.close();
    }
  });

  it('different destinations do not share connections; concurrent messages open their own', async () => {
    const sink = await startFakeSmtp();
    const agent = createDeliveryAgent(base);
    try {
      const other = { ...makeRoute(sink.port), destination: 'mx:other.test' };
      await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['a@dst.test']));
      await agent.deliver(other, makeJob(smallBody(), ['b@other.test']));
      assert.equal(sink.sessions, 2);
      const results = await Promise.all([0, 1, 2].map((i) => agent.deliver(makeRoute(sink.port), makeJob(smallBody(), [`c${i}@dst.test`]))));
      assert.ok(results.every((r) => kinds(r).join() === 'delivered'));
      assert.equal(sink.sessions, 4, 'one pooled + two new for three concurrent messages');
      assert.equal(sink.delivered.length, 5);
    } finally {
      await agent.close();
      await sink.close();
    }
  });

  for (const mode of ['closes after each message', 'drops the connection at RSET'] as const) {
    it(`a pooled connection the peer closed is replaced, not a failure (peer ${mode})`, async () => {
      let sessions = 0;
      let received = 0;
      const peer = await rawServer((s) => {
        sessions++;
        s.write('220 peer.test\r\n');
        let inData = false;
        let buf = '';
        s.on('data', (d: Buffer) => {
          buf += d.toString('latin1');
          for (;;) {
            if (inData) {
              const end = buf.indexOf('\r\n.\r\n');
              if (end < 0) return;
              buf = buf.slice(end + 5);
              inData = false;
              received++;
              if (mode === 'closes after each message') s.end('250 2.0.0 ok\r\n');
              else s.write('250 2.0.0 ok\r\n');
              continue;
            }
            const eol = buf.indexOf('\r\n');
            if (eol < 0) return;
            const line = buf.slice(0, eol).toUpperCase();
            buf = buf.slice(eol + 2);
            if (line === 'RSET' && mode === 'drops the connection at RSET') s.destroy();
            else if (line === 'DATA') {
              s.write('354 go\r\n');
              buf = '\r\n' + buf;
              inData = true;
            } else if (line === 'QUIT') s.end('221 bye\r\n');
            else s.write('250 ok\r\n');
          }
        });
      });
      // Dropping at RSET needs an RSET: probeAfterMs 0 probes every reuse.
      const agent = createDeliveryAgent(mode === 'drops the connection at RSET' ? { ...base, probeAfterMs: 0 } : base);
      try {
        for (let i = 0; i < 3; i++) {
          const r = await agent.deliver(makeRoute(peer.port), makeJob(smallBody(), [`r${i}@dst.test`]));
          assert.deepEqual(kinds(r), ['delivered']);
          assert.equal(r.note, undefined, 'a dead pooled connection is not a failed host');
        }
        assert.equal(received, 3);
        assert.equal(sessions, 3);
      } finally {
        await agent.close();
        await peer.close();
      }
    });
  }

  for (const death of ['fin', '421'] as const) {
    it(`a pooled connection the peer closes just as it is reused unprobed (${death === 'fin' ? 'FIN' : '421 idle timeout'}): delivered once, on a new connection, no note`, async () => {
      // The peer's close crosses our pipelined MAIL: it leaves instead of answering the first
      // command of a connection's second transaction.
      const peer = await mortalPeer((c, line) => (c.transactions >= 1 && line.startsWith('MAIL') ? death : undefined));
      const agent = createDeliveryAgent(base);
      try {
        assert.deepEqual(kinds(await agent.deliver(makeRoute(peer.port), makeJob(smallBody('one'), ['a@dst.test']))), ['delivered']);
        const r = await agent.deliver(makeRoute(peer.port), makeJob(smallBody('two'), ['b@dst.test']));
        assert.deepEqual(kinds(r), ['delivered']);
        assert.equal(r.note, undefined, 'a dead reused connection is neither a failed host nor history');
        assert.equal(peer.messages.filter((m) => m.includes('Subject: two')).length, 1, 'delivered exactly once');
        const [first, second] = peer.connections;
        assert.equal(peer.connections.length, 2);
        assert.ok(first && second);
        assert.equal(count(first.received, 'RCPT TO:<b@dst.test>'), 1, 'the message was tried on the reused connection');
        assert.equal(count(first.received, 'RSET'), 0, 'reused without a probe');
        assert.ok(!first.received.includes('Subject: two'), 'no body byte went to the dead connection');
        assert.ok(second.received.includes('Subject: two'));
        assert.equal(count(second.received, 'RSET'), 0, 'a new connection is not probed');
      } finally {
        await agent.close();
        await peer.close();
      }
    });
  }

  it('two dead connections in the pool: the retry probes the second (dead at RSET), then opens a new one; delivered once', async () => {
    // Every connection dies at the first command after its first message: MAIL unprobed, RSET probed.
    const peer = await mortalPeer((c) => (c.transactions >= 1 ? 'fin' : undefined));
    const agent = createDeliveryAgent(base);
    try {
      const both = await Promise.all(['a', 'b'].map((x) => agent.deliver(makeRoute(peer.port), makeJob(smallBody(x), [`${x}@dst.test`]))));
      assert.ok(both.every((r) => kinds(r).join() === 'delivered'));
      assert.equal(peer.connections.length, 2, 'two connections parked');
      const r = await agent.deliver(makeRoute(peer.port), makeJob(smallBody('three'), ['c@dst.test']));
      assert.deepEqual(kinds(r), ['delivered']);
      assert.equal(r.note, undefined);
      assert.equal(peer.messages.filter((m) => m.includes('Subject: three')).length, 1);
      assert.equal(peer.connections.length, 3);
      const [a, b, c] = peer.connections.map((x) => x.received);
      assert.equal([a, b].filter((t) => t?.includes('RCPT TO:<c@dst.test>')).length, 1, 'one pooled connection was reused unprobed');
      assert.equal([a, b].filter((t) => t?.includes('RSET')).length, 1, 'the other was probed for the retry');
      assert.ok(c?.includes('Subject: three'));
    } finally {
      await agent.close();
      await peer.close();
    }
  });

  it('a peer that closes at every MAIL after its first message: one retry on a new connection, then deferred (no loop)', async () => {
    const peer = await mortalPeer((_c, line) => (line.startsWith('MAIL') && peer.messages.length >= 1 ? 'fin' : undefined));
    const agent = createDeliveryAgent(base);
    try {
      assert.deepEqual(kinds(await agent.deliver(makeRoute(peer.port), makeJob(smallBody('one'), ['a@dst.test']))), ['delivered']);
      const r = await agent.deliver(makeRoute(peer.port), makeJob(smallBody('two'), ['b@dst.test']));
      assert.deepEqual(kinds(r), ['deferred'], 'lost before MAIL on a new connection: an outcome like any other');
      assert.equal(peer.connections.length, 2, 'the reused connection and one new one');
      assert.equal(count(peer.connections.map((c) => c.received).join(''), 'RCPT TO:<b@dst.test>'), 2, 'tried twice, no more');
      assert.equal(peer.messages.length, 1);
    } finally {
      await agent.close();
      await peer.close();
    }
  });

  it('ConnectionPool.close() with nothing open returns at once', async () => {
    const pool = new ConnectionPool({ hostname: 'relay.test', clock: systemClock, log: silentLogger });
    assert.equal(pool.idleCount, 0);
    await pool.close();
  });
});
