/**
 * The delivery agent against the scriptable sink (test/fakes/fake-smtp-server.ts), end to end
 * over real sockets on port 0: whole (byte-exact, 20 MiB, dot-heavy, BDAT), once (retries deliver
 * one copy; ambiguous and held never move to another host), host order (refused, 421 and 554
 * greetings pass to the next host), the framing-fault guard, "delivered" only ever when the
 * sink recorded the delivery, the long-lines policy (wrap, pass, bounce; BINARYMIME peers), and
 * the window mark (beforeEndOfData runs before end-of-data is on the wire; a rejection sends none).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { silentLogger } from '../obs/index.js';
import { systemClock } from '../util/index.js';
import { startFakeSmtp, type FakeSmtpServer } from '../../test/fakes/fake-smtp-server.js';
import { closedPort, count, dotHeavyBody, makeJob, makeRoute, rawServer, recordingProxy, smallBody } from '../../test/support/delivery.js';
import { createDeliveryAgent, DELIVERY_CHANNELS, type DeliveryAgent, type DeliveryAgentOptions, type DeliveryDiagnostic } from './agent.js';
import { DeliveryError } from './connection.js';

const base: DeliveryAgentOptions = { hostname: 'relay.test', clock: systemClock, log: silentLogger };

async function withAgent(o: Partial<DeliveryAgentOptions>, fn: (agent: DeliveryAgent) => Promise<void>): Promise<void> {
  const agent = createDeliveryAgent({ ...base, ...o });
  try {
    await fn(agent);
  } finally {
    await agent.close();
  }
}

async function withSink(o: Parameters<typeof startFakeSmtp>[0], fn: (sink: FakeSmtpServer) => Promise<void>): Promise<void> {
  const sink = await startFakeSmtp(o);
  try {
    await fn(sink);
  } finally {
    await sink.close();
  }
}

const kinds = (r: { outcomes: readonly { kind: string }[] }): string[] => r.outcomes.map((o) => o.kind);

/** A peer that says one line and answers QUIT. */
function greeter(banner: string) {
  return rawServer((s) => {
    s.write(`${banner}\r\n`);
    s.on('data', (d: Buffer) => {
      if (d.toString().toUpperCase().startsWith('QUIT')) s.end('221 bye\r\n');
      else s.write('503 5.5.1 no\r\n');
    });
  });
}

describe('delivery/agent', () => {
  it('a 20 MiB dot-heavy message arrives byte-exact by DATA', async () => {
    const body = dotHeavyBody(20 * 1024 * 1024);
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        const r = await agent.deliver(makeRoute(sink.port), makeJob(body, ['bob@dst.test'], { sizes: [65_536, 1, 2, 3, 4093] }));
        assert.deepEqual(kinds(r), ['delivered']);
        assert.equal(r.nextHop, `mx1.test[127.0.0.1]:${sink.port}`);
        assert.equal(sink.delivered.length, 1);
        assert.equal(sink.delivered[0]?.via, 'DATA');
        assert.ok(sink.delivered[0]?.data.equals(body), 'byte-exact');
      }),
    );
  });

  it('BDAT to a CHUNKING sink arrives byte-exact (5 MiB, dot-heavy)', async () => {
    const body = dotHeavyBody(5 * 1024 * 1024);
    await withSink({ extensions: ['PIPELINING', 'CHUNKING', '8BITMIME'] }, (sink) =>
      withAgent({}, async (agent) => {
        const r = await agent.deliver(makeRoute(sink.port), makeJob(body, ['bob@dst.test', 'carol@dst.test']));
        assert.deepEqual(kinds(r), ['delivered', 'delivered']);
        assert.equal(sink.delivered.length, 1);
        assert.equal(sink.delivered[0]?.via, 'BDAT');
        assert.deepEqual(sink.delivered[0]?.rcpts, ['bob@dst.test', 'carol@dst.test']);
        assert.ok(sink.delivered[0]?.data.equals(body), 'byte-exact');
      }),
    );
  });

  it('two recipients, one refused with 550: one delivered, one bounced quoting the sink verbatim', async () => {
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        const r = await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['bob@dst.test', 'reject-eve@dst.test']));
        assert.deepEqual(kinds(r), ['delivered', 'bounced']);
        assert.deepEqual(r.outcomes.map((o) => o.recipient), [0, 1]);
        assert.equal(r.outcomes[1]?.reply, '550 5.1.1 <reject-eve@dst.test>: Recipient address rejected: User unknown');
        assert.equal(r.outcomes[1]?.scope, 'recipient');
        assert.equal(sink.delivered.length, 1);
        assert.deepEqual(sink.delivered[0]?.rcpts, ['bob@dst.test']);
      }),
    );
  });

  it('451 to RCPT once: deferred, then delivered once', async () => {
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        const job = makeJob(smallBody(), ['tempfail-rcpt-once-bob@dst.test']);
        const first = await agent.deliver(makeRoute(sink.port), job);
        assert.deepEqual(kinds(first), ['deferred']);
        assert.match(first.outcomes[0]?.reply ?? '', /^451 4\.3\.0/);
        assert.equal(sink.delivered.length, 0);
        const second = await agent.deliver(makeRoute(sink.port), job);
        assert.deepEqual(kinds(second), ['delivered']);
        assert.equal(sink.delivered.length, 1);
      }),
    );
  });

  it('451 after end-of-data once: deferred, then exactly one delivered transaction', async () => {
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        const body = smallBody();
        const job = makeJob(body, ['tempfail-data-once-bob@dst.test']);
        assert.deepEqual(kinds(await agent.deliver(makeRoute(sink.port), job)), ['deferred']);
        assert.deepEqual(kinds(await agent.deliver(makeRoute(sink.port), job)), ['delivered']);
        assert.equal(sink.transactions.length, 2);
        assert.equal(sink.delivered.length, 1);
        assert.ok(sink.delivered[0]?.data.equals(body));
      }),
    );
  });

  it('connection dropped mid-DATA once: deferred (not ambiguous), then one complete copy', async () => {
    const body = dotHeavyBody(8 * 1024 * 1024);
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        const job = makeJob(body, ['drop-in-data-once-bob@dst.test']);
        const first = await agent.deliver(makeRoute(sink.port), job);
        assert.deepEqual(kinds(first), ['deferred']);
        assert.match(first.outcomes[0]?.reply ?? '', /lost connection while sending the message body/);
        assert.equal(sink.delivered.length, 0);
        const second = await agent.deliver(makeRoute(sink.port), job);
        assert.deepEqual(kinds(second), ['delivered']);
        assert.equal(sink.delivered.length, 1);
        assert.ok(sink.delivered[0]?.data.equals(body), 'only the complete copy was delivered');
      }),
    );
  });

  it('a peer that answers 250 before our end-of-data: held, framing fault published, no second host', async () => {
    const body = dotHeavyBody(4 * 1024 * 1024);
    const faults: DeliveryDiagnostic[] = [];
    const onFault = (m: unknown): void => void faults.push(m as DeliveryDiagnostic);
    subscribe(DELIVERY_CHANNELS.framingFault, onFault);
    try {
      await withSink({}, (sink) =>
        withSink({}, (second) =>
          withAgent({}, async (agent) => {
            const job = makeJob(body, ['early-250-bob@dst.test']);
            const r = await agent.deliver(makeRoute(sink.port, second.port), job);
            assert.deepEqual(kinds(r), ['held']);
            assert.match(r.note ?? '', /framing fault at mx1\.test.*before our end-of-data/);
            assert.ok(sink.transactions.length <= 1);
            assert.equal(sink.delivered.length, 0, 'we never sent the terminator');
            assert.equal(second.sessions, 0, 'a held message is not tried on the next host');
            assert.equal(faults.length, 1);
            assert.equal(faults[0]?.messageId, job.messageId);
          }),
        ),
      );
    } finally {
      unsubscribe(DELIVERY_CHANNELS.framingFault, onFault);
    }
  });

  it('a spool one byte short: held, both counts in the note, nothing delivered anywhere', async () => {
    const body = smallBody();
    await withSink({}, (sink) =>
      withSink({}, (second) =>
        withAgent({}, async (agent) => {
          const job = makeJob(body, ['bob@dst.test', 'carol@dst.test'], {
            openBody: () => (async function* () { yield body.subarray(0, body.length - 1); })(),
          });
          const r = await agent.deliver(makeRoute(sink.port, second.port), job);
          assert.deepEqual(kinds(r), ['held', 'held']);
          assert.match(r.note ?? '', new RegExp(`read ${body.length - 1} of ${body.length} accepted octets`));
          assert.equal(sink.delivered.length + second.delivered.length, 0);
          assert.equal(second.sessions, 0);
        }),
      ),
    );
  });

  it('a first host that refuses connections: the second host delivers', async () => {
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        const dead = await closedPort(sink.port);
        const r = await agent.deliver(makeRoute(dead, sink.port), makeJob(smallBody(), ['bob@dst.test']));
        assert.deepEqual(kinds(r), ['delivered']);
        assert.equal(r.nextHop, `mx2.test[127.0.0.1]:${sink.port}`);
        assert.match(r.note ?? '', new RegExp(`mx1\\.test\\[127\\.0\\.0\\.1\\]:${dead}: not reached: .*ECONNREFUSED`));
        assert.equal(sink.delivered.length, 1);
      }),
    );
  });

  it('a 421 or 554 greeting: the next host delivers', async () => {
    for (const banner of ['421 4.3.2 try later', '554 5.7.1 no service']) {
      const peer = await greeter(banner);
      try {
        await withSink({}, (sink) =>
          withAgent({}, async (agent) => {
            const r = await agent.deliver(makeRoute(peer.port, sink.port), makeJob(smallBody(), ['bob@dst.test']));
            assert.deepEqual(kinds(r), ['delivered']);
            assert.ok((r.note ?? '').includes(`session refused: ${banner}`), r.note);
            assert.equal(sink.delivered.length, 1);
          }),
        );
      } finally {
        await peer.close();
      }
    }
  });

  it('every host fails: the last failure stands', async () => {
    const busy = await greeter('421 4.3.2 busy');
    const dead = await closedPort(busy.port);
    try {
      await withAgent({}, async (agent) => {
        const r = await agent.deliver(makeRoute(busy.port, dead), makeJob(smallBody(), ['bob@dst.test', 'carol@dst.test']));
        assert.deepEqual(kinds(r), ['deferred', 'deferred']);
        assert.ok(r.outcomes.every((o) => o.enhanced === '4.4.1' && /ECONNREFUSED/.test(o.reply)));
        assert.equal(r.nextHop, `mx1.test[127.0.0.1]:${busy.port}`, 'the last host reached');
        const none = await agent.deliver(makeRoute(dead), makeJob(smallBody(), ['bob@dst.test']));
        assert.equal(none.nextHop, '');
        // A 554 greeting at the last host bounces (classify decides; the agent only walks hosts).
        const refusing = await greeter('554 5.7.1 no');
        try {
          const b = await agent.deliver(makeRoute(dead, refusing.port), makeJob(smallBody(), ['bob@dst.test']));
          assert.deepEqual(kinds(b), ['bounced']);
        } finally {
          await refusing.close();
        }
      });
    } finally {
      await busy.close();
    }
  });

  it('a slow peer past the end-of-data timeout: ambiguous, and no second host', async () => {
    await withSink({ slowMs: 400 }, (sink) =>
      withSink({}, (second) =>
        withAgent({ timeouts: { 'data-end': 50 } }, async (agent) => {
          const r = await agent.deliver(makeRoute(sink.port, second.port), makeJob(smallBody(), ['slow-bob@dst.test']));
          assert.deepEqual(kinds(r), ['ambiguous']);
          assert.match(r.outcomes[0]?.reply ?? '', /timed out while waiting for the reply to end-of-data/);
          assert.equal(second.sessions, 0, 'never retried elsewhere within the attempt');
        }),
      ),
    );
  });

  it('a message over the peer SIZE limit bounces 5.3.4 before MAIL', async () => {
    await withSink({ extensions: ['PIPELINING', 'SIZE 100'] }, (sink) =>
      withAgent({}, async (agent) => {
        const r = await agent.deliver(makeRoute(sink.port), makeJob(Buffer.alloc(200, 0x61), ['bob@dst.test']));
        assert.deepEqual(kinds(r), ['bounced']);
        assert.equal(r.outcomes[0]?.enhanced, '5.3.4');
        assert.equal(sink.transactions.length, 0);
      }),
    );
  });

  it('publishes connect and transaction events', async () => {
    const seen: string[] = [];
    const onConnect = (m: unknown): void => void seen.push(`connect ${(m as DeliveryDiagnostic).detail}`);
    const onTx = (m: unknown): void => void seen.push(`transaction ${(m as DeliveryDiagnostic).detail}`);
    subscribe(DELIVERY_CHANNELS.connect, onConnect);
    subscribe(DELIVERY_CHANNELS.transaction, onTx);
    try {
      await withSink({}, (sink) =>
        withAgent({}, async (agent) => {
          await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['bob@dst.test', 'reject-x@dst.test']));
          await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['bob@dst.test']));
        }),
      );
    } finally {
      unsubscribe(DELIVERY_CHANNELS.connect, onConnect);
      unsubscribe(DELIVERY_CHANNELS.transaction, onTx);
    }
    assert.deepEqual(seen, ['connect connected', 'transaction 1 delivered, 1 bounced', 'connect reused', 'transaction 1 delivered']);
  });

  it('never reports delivered unless the sink recorded the delivery', async () => {
    const cases = [
      'bob', 'reject-a', 'tempfail-rcpt-once-b', 'tempfail-data-once-c', 'drop-in-data-once-d', 'early-250-e', 'slow-f', 'always-451-g', 'carol',
    ];
    await withSink({ slowMs: 300 }, (sink) =>
      withAgent({ timeouts: { 'data-end': 100 } }, async (agent) => {
        const delivered: string[] = [];
        for (let round = 0; round < 2; round++) {
          for (const local of cases) {
            const address = `${local}@dst.test`;
            const body = local.startsWith('drop') || local.startsWith('early') ? dotHeavyBody(4 * 1024 * 1024) : smallBody(local);
            for (const rcpts of [[address], [address, `plain-${local}@dst.test`]]) {
              const r = await agent.deliver(makeRoute(sink.port), makeJob(body, rcpts));
              assert.equal(r.outcomes.length, rcpts.length, 'one outcome per recipient');
              r.outcomes.forEach((o) => {
                if (o.kind === 'delivered') delivered.push(rcpts[o.recipient] ?? '?');
              });
            }
          }
        }
        assert.ok(delivered.length > 0);
        const recorded = sink.delivered.flatMap((t) => t.rcpts);
        for (const rcpt of new Set(delivered)) {
          const ours = delivered.filter((d) => d === rcpt).length;
          const theirs = recorded.filter((d) => d === rcpt).length;
          assert.ok(theirs >= ours, `${rcpt}: we said delivered ${ours}×, the sink recorded ${theirs}×`);
        }
      }),
    );
  });

  it('DSN parameters go to a peer that offers DSN, and only to one', async () => {
    for (const dsn of [true, false]) {
      await withSink({ extensions: ['PIPELINING', ...(dsn ? ['DSN'] : [])] }, (sink) =>
        withAgent({}, async (agent) => {
          const job = makeJob(smallBody(), ['bob@dst.test'], {
            ret: 'HDRS',
            envid: 'env+1',
            recipients: [{ address: 'bob@dst.test', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;bob@orig.test' }],
          });
          assert.deepEqual(kinds(await agent.deliver(makeRoute(sink.port), job)), ['delivered']);
          const [mail, rcpt] = sink.delivered[0]?.commands ?? [];
          if (dsn) {
            assert.match(mail ?? '', / RET=HDRS ENVID=env\+2B1/);
            assert.match(rcpt ?? '', /NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@orig\.test/);
          } else {
            assert.doesNotMatch(`${mail} ${rcpt}`, /RET=|ENVID=|NOTIFY=|ORCPT=/);
          }
        }),
      );
    }
  });

  it('a null sender is MAIL FROM:<>', async () => {
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        assert.deepEqual(kinds(await agent.deliver(makeRoute(sink.port), makeJob(smallBody(), ['bob@dst.test'], { sender: '' }))), ['delivered']);
        assert.match(sink.delivered[0]?.commands[0] ?? '', /^MAIL FROM:<>/);
      }),
    );
  });

  it('BINARYMIME goes byte-exact by BDAT to a peer with BINARYMIME, and bounces 5.6.3 elsewhere', async () => {
    const body = Buffer.from('Content-Type: application/octet-stream\r\n\r\n\x00\n\r.\n\r\n.\r\n\xff', 'latin1');
    await withSink({ extensions: ['PIPELINING', 'CHUNKING', 'BINARYMIME'] }, (sink) =>
      withAgent({}, async (agent) => {
        const r = await agent.deliver(makeRoute(sink.port), makeJob(body, ['bob@dst.test'], { body: 'BINARYMIME', sizes: [3] }));
        assert.deepEqual(kinds(r), ['delivered']);
        assert.ok(sink.delivered[0]?.data.equals(body), 'binary bytes untouched');
        assert.match(sink.delivered[0]?.commands[0] ?? '', /BODY=BINARYMIME/);
      }),
    );
    await withSink({}, (sink) =>
      withAgent({}, async (agent) => {
        const r = await agent.deliver(makeRoute(sink.port), makeJob(body, ['bob@dst.test'], { body: 'BINARYMIME' }));
        assert.deepEqual(kinds(r), ['bounced']);
        assert.equal(r.outcomes[0]?.enhanced, '5.6.3');
        assert.equal(sink.transactions.length, 0);
      }),
    );
  });

  it('rejects a job it cannot send, with a stable code, and refuses work after close()', async () => {
    const agent = createDeliveryAgent(base);
    await assert.rejects(agent.deliver(makeRoute(1), makeJob(smallBody(), ['not an address'])), (e: unknown) => e instanceof DeliveryError && e.code === 'DELIVERY_BAD_JOB');
    await assert.rejects(agent.deliver(makeRoute(1), makeJob(smallBody(), [])), (e: unknown) => e instanceof DeliveryError && e.code === 'DELIVERY_BAD_JOB');
    await assert.rejects(agent.deliver(makeRoute(), makeJob(smallBody(), ['bob@dst.test'])), (e: unknown) => e instanceof DeliveryError && e.code === 'DELIVERY_BAD_ROUTE');
    await agent.close();
    await assert.rejects(agent.deliver(makeRoute(1), makeJob(smallBody(), ['bob@dst.test'])), (e: unknown) => e instanceof DeliveryError && e.code === 'DELIVERY_AGENT_CLOSED');
  });

  describe('long lines (policy long-lines)', () => {
    // A 5,000-octet body line among ordinary ones; no CRLF SP in it, so the breaks are findable.
    const longBody = Buffer.from(`Subject: long\r\nX-Note: ${'h'.repeat(1200)}\r\n\r\nfirst\r\n${'x'.repeat(5000)}\r\n.dot\r\nlast\r\n`, 'latin1');
    const lines = (b: Buffer): string[] => b.toString('latin1').split('\r\n');
    const unwrapped = (b: Buffer): Buffer => Buffer.from(b.toString('latin1').split('\r\n ').join(''), 'latin1');
    const plain = ['PIPELINING', '8BITMIME', 'SIZE 104857600'];
    const binary = ['PIPELINING', 'CHUNKING', 'BINARYMIME', '8BITMIME'];

    for (const extensions of [plain, ['PIPELINING', 'CHUNKING', '8BITMIME']]) {
      const via = extensions.includes('CHUNKING') ? 'BDAT' : 'DATA';
      it(`wrap (the default) by ${via}: lines ≤ 998 with CRLF SP continuations; unwrapping restores the stored bytes`, async () => {
        await withSink({ extensions }, (sink) =>
          withAgent({}, async (agent) => {
            const r = await agent.deliver(makeRoute(sink.port), makeJob(longBody, ['bob@dst.test'], { sizes: [997, 1, 2, 4096] }));
            assert.deepEqual(kinds(r), ['delivered']);
            const got = sink.delivered[0]?.data ?? Buffer.alloc(0);
            assert.equal(sink.delivered[0]?.via, via);
            assert.ok(lines(got).every((l) => l.length <= 998), 'no line over 998');
            assert.equal(count(got.toString('latin1'), '\r\n '), 6, 'one break in the 1,208-octet header, five in the 5,000-octet line');
            assert.equal(got.length, longBody.length + 6 * 3);
            assert.ok(unwrapped(got).equals(longBody), 'removing CRLF SP restores the stored bytes');
            assert.match(r.note ?? '', /2 line\(s\) longer than 998 octets wrapped with CRLF SP \(6 break\(s\)\) for mx1\.test\[127\.0\.0\.1\]:\d+, which lacks BINARYMIME/);
          }),
        );
      });
    }

    it('pass: sent byte-exact, and noted', async () => {
      await withSink({ extensions: plain }, (sink) =>
        withAgent({ longLines: 'pass' }, async (agent) => {
          const r = await agent.deliver(makeRoute(sink.port), makeJob(longBody, ['bob@dst.test'], { sizes: [3, 1000] }));
          assert.deepEqual(kinds(r), ['delivered']);
          assert.ok(sink.delivered[0]?.data.equals(longBody), 'byte-exact');
          assert.match(r.note ?? '', /2 line\(s\) longer than 998 octets sent unchanged to .*, which lacks BINARYMIME \(long-lines pass\)/);
        }),
      );
    });

    it('bounce: every recipient bounced locally before MAIL, nothing sent, the connection reused, no other host', async () => {
      await withSink({ extensions: plain }, (sink) =>
        withSink({ extensions: plain }, (second) => {
          return recordingProxy(sink.port).then(async (proxy) => {
            try {
              await withAgent({ longLines: 'bounce' }, async (agent) => {
                const r = await agent.deliver(makeRoute(proxy.port, second.port), makeJob(longBody, ['bob@dst.test', 'carol@dst.test']));
                assert.deepEqual(kinds(r), ['bounced', 'bounced']);
                for (const o of r.outcomes) {
                  assert.equal(o.reply, '554 5.6.0 message has lines longer than 998 octets and the peer lacks BINARYMIME');
                  assert.equal(o.enhanced, '5.6.0');
                  assert.equal(o.scope, 'message');
                  assert.equal(o.local, true);
                }
                assert.match(r.note ?? '', /lacks BINARYMIME: bounced before MAIL \(long-lines bounce\)/);
                assert.equal(second.sessions, 0, 'no other host tried');
                assert.doesNotMatch(proxy.sent(), /MAIL FROM/);
                // The same session then carries a clean message.
                const ok = await agent.deliver(makeRoute(proxy.port), makeJob(smallBody(), ['bob@dst.test']));
                assert.deepEqual(kinds(ok), ['delivered']);
                assert.equal(ok.note, undefined);
              });
              assert.equal(proxy.connections, 1, 'the connection stayed usable');
              assert.equal(count(proxy.sent(), 'MAIL FROM'), 1);
              assert.equal(sink.transactions.length, 1);
            } finally {
              await proxy.close();
            }
          });
        }),
      );
    });

    it('bounce: a body with no long line (even one of exactly 998) is delivered unchanged', async () => {
      const body = Buffer.from(`Subject: edge\r\n\r\n${'y'.repeat(998)}\r\n${'z'.repeat(998)}`, 'latin1');
      await withSink({ extensions: plain }, (sink) =>
        withAgent({ longLines: 'bounce' }, async (agent) => {
          const r = await agent.deliver(makeRoute(sink.port), makeJob(body, ['bob@dst.test'], { sizes: [1015, 1] }));
          assert.deepEqual(kinds(r), ['delivered']);
          assert.equal(sink.delivered[0]?.data.toString('latin1'), `${body.toString('latin1')}\r\n`); // DATA adds the last CRLF
          assert.equal(r.note, undefined);
        }),
      );
    });

    for (const policy of ['wrap', 'pass', 'bounce'] as const) {
      it(`${policy}: a BINARYMIME+CHUNKING peer gets the lines unchanged by BDAT (BODY=BINARYMIME and 8BITMIME)`, async () => {
        await withSink({ extensions: binary }, (sink) =>
          withAgent({ longLines: policy }, async (agent) => {
            for (const body of ['BINARYMIME', '8BITMIME'] as const) {
              const r = await agent.deliver(makeRoute(sink.port), makeJob(longBody, ['bob@dst.test'], { body }));
              assert.deepEqual(kinds(r), ['delivered']);
              assert.equal(r.note, undefined);
            }
            assert.equal(sink.delivered.length, 2);
            for (const t of sink.delivered) {
              assert.equal(t.via, 'BDAT');
              assert.ok(t.data.equals(longBody), 'unchanged');
            }
            assert.match(sink.delivered[0]?.commands[0] ?? '', /BODY=BINARYMIME/);
            assert.match(sink.delivered[1]?.commands[0] ?? '', /BODY=8BITMIME/);
          }),
        );
      });
    }

    for (const [what, delta] of [['one octet short', 1], ['one octet long', -1]] as const) {
      it(`wrap keeps the framing-fault guard on the spool's bytes: a spool ${what} is held, never ended`, async () => {
        await withSink({ extensions: plain }, (sink) =>
          withAgent({}, async (agent) => {
            const r = await agent.deliver(makeRoute(sink.port), makeJob(longBody, ['bob@dst.test'], { size: longBody.length + delta, sizes: [1500] }));
            assert.deepEqual(kinds(r), ['held']);
            assert.equal(sink.delivered.length, 0);
            assert.equal(sink.transactions.length, 0, 'no end-of-data after a partial body');
            const read = delta > 0 ? longBody.length : longBody.length + 1;
            assert.match(r.note ?? '', new RegExp(`framing fault at .*read ${delta > 0 ? read : `\\d+`} of ${longBody.length + delta} accepted octets`));
          }),
        );
      });
    }

    it('bounce: a spool that changes between the pre-scan and the body is held before end-of-data', async () => {
      const clean = Buffer.from(`Subject: a\r\n\r\n${'x'.repeat(990)}\r\n${'x'.repeat(1010)}`, 'latin1');
      const long = Buffer.from(`Subject: a\r\n\r\n${'x'.repeat(2002)}`, 'latin1');
      assert.equal(clean.length, long.length);
      let opened = 0;
      await withSink({ extensions: plain }, (sink) =>
        withAgent({ longLines: 'bounce' }, async (agent) => {
          const job = makeJob(clean, ['bob@dst.test'], {
            openBody: async function* () {
              opened++;
              if (opened === 1) yield Buffer.from(clean.toString('latin1').replace(/x{1010}$/, 'x'.repeat(998)), 'latin1');
              else yield* [long.subarray(0, 1500), long.subarray(1500)];
            },
          });
          const r = await agent.deliver(makeRoute(sink.port), job);
          assert.equal(opened, 2);
          assert.deepEqual(kinds(r), ['held']);
          assert.match(r.note ?? '', /the spool changed/);
          assert.equal(sink.transactions.length, 0);
        }),
      );
    });

    it('bounce: a spool that cannot be read for the pre-scan defers locally, nothing sent', async () => {
      await withSink({ extensions: plain }, (sink) =>
        withAgent({ longLines: 'bounce' }, async (agent) => {
          const job = makeJob(longBody, ['bob@dst.test'], {
            openBody: () => {
              throw new Error('EIO: spool gone');
            },
          });
          const r = await agent.deliver(makeRoute(sink.port), job);
          assert.deepEqual(kinds(r), ['deferred']);
          assert.equal(r.outcomes[0]?.local, true);
          assert.match(r.outcomes[0]?.reply ?? '', /^451 4\.3\.0 spool read error before MAIL: EIO: spool gone/);
          assert.match(r.note ?? '', /spool read error/);
          assert.equal(sink.transactions.length, 0);
        }),
      );
    });
  });
});

describe('delivery/agent: the RFC 1047 window mark (beforeEndOfData)', () => {
  for (const extensions of [['PIPELINING', '8BITMIME'], ['PIPELINING', 'CHUNKING', '8BITMIME'], ['CHUNKING', '8BITMIME']]) {
    const via = extensions.includes('CHUNKING') ? `BDAT${extensions.includes('PIPELINING') ? ' pipelined' : ' lock-step'}` : 'DATA';
    it(`${via}: awaited once per transaction, and end-of-data reaches the peer only after it resolved`, async () => {
      const body = dotHeavyBody(200_000);
      await withSink({ extensions }, (sink) =>
        withAgent({ chunkSize: 30_000 }, async (agent) => {
          const seen: Array<{ transactionsAtCall: number; transactionsBeforeResolve: number }> = [];
          const job = makeJob(body, ['bob@dst.test', 'carol@dst.test'], {
            sizes: [7_777],
            beforeEndOfData: async () => {
              const transactionsAtCall = sink.transactions.length;
              // Long enough for a terminator already written to arrive and be recorded.
              await new Promise((resolve) => setTimeout(resolve, 150));
              seen.push({ transactionsAtCall, transactionsBeforeResolve: sink.transactions.length });
            },
          });
          const r = await agent.deliver(makeRoute(sink.port), job);
          assert.deepEqual(kinds(r), ['delivered', 'delivered']);
          assert.deepEqual(seen, [{ transactionsAtCall: 0, transactionsBeforeResolve: 0 }], 'once, and no end-of-data while it ran');
          assert.equal(sink.delivered.length, 1);
          assert.ok(sink.delivered[0]?.data.equals(body), 'byte-exact');
          // A second message on the pooled connection: its own call.
          const again = await agent.deliver(makeRoute(sink.port), { ...job, messageId: 'second' });
          assert.deepEqual(kinds(again), ['delivered', 'delivered']);
          assert.equal(seen.length, 2);
          assert.deepEqual(seen[1], { transactionsAtCall: 1, transactionsBeforeResolve: 1 });
        }),
      );
    });

    it(`${via}: when it rejects, end-of-data is never sent, the recipients are deferred locally and no other host is tried`, async () => {
      const body = dotHeavyBody(100_000);
      await withSink({ extensions }, (sink) =>
        withSink({ extensions }, (other) =>
          withAgent({ chunkSize: 30_000 }, async (agent) => {
            let calls = 0;
            const job = makeJob(body, ['bob@dst.test', 'carol@dst.test'], {
              beforeEndOfData: () => {
                calls++;
                return Promise.reject(new Error('QUEUE_LEASE_LOST: message m: the lease was lost'));
              },
            });
            const r = await agent.deliver(makeRoute(sink.port, other.port), job);
            assert.deepEqual(kinds(r), ['deferred', 'deferred']);
            assert.ok(r.outcomes.every((o) => o.local === true && o.scope === 'message'), JSON.stringify(r.outcomes));
            assert.ok(r.outcomes.every((o) => o.reply.startsWith('451 ') && o.reply.includes('end-of-data not sent')), JSON.stringify(r.outcomes));
            assert.equal(calls, 1);
            assert.match(r.note ?? '', /end-of-data not sent to mx1\.test\[127\.0\.0\.1\]:\d+: the delivery window could not be marked: QUEUE_LEASE_LOST/);
            // Give a terminator that was written anyway the time to arrive: none was.
            await new Promise((resolve) => setTimeout(resolve, 100));
            assert.equal(sink.transactions.length, 0, 'the sink never saw end-of-data');
            assert.equal(sink.delivered.length, 0);
            assert.equal(other.sessions, 0, 'no further host');
          }),
        ),
      );
    });
  }
});

