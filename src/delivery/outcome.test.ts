/**
 * The outcome classifier: each rule on its own, real server replies from test/fixtures/replies
 * (read through ReplyReader, as the connection reads them), whole dialogues through the client
 * session, and properties: every fact classifies, and the status class always agrees with kind.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { readFileSync, readdirSync } from 'node:fs';
import { ClientSession, ReplyReader, parseForwardPath } from '../protocol/index.js';
import type { AttemptFact, ClientEvent, ClientStepName, OutboundMessage, Reply } from '../protocol/index.js';
import { classify, classifySession, classifyTransaction, verbatim } from './outcome.js';
import type { Outcome } from './outcome.js';

const FIXTURES = new URL('../../../test/fixtures/replies/', import.meta.url);

function readReply(text: string): Reply {
  const replies = new ReplyReader().push(Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8'));
  assert.equal(replies.length, 1, `one reply in ${JSON.stringify(text)}`);
  return replies[0] as Reply;
}

const fact = (step: ClientStepName, text: string): AttemptFact => ({ kind: 'reply', step, reply: readReply(`${text}\n`) });
const brief = (o: Outcome): string => `${o.kind}/${o.scope}/${o.enhanced ?? '-'}`;

interface Case {
  readonly file: string;
  readonly header: Record<string, string>;
  readonly text: string;
}

function loadCases(): Case[] {
  const cases: Case[] = [];
  for (const file of readdirSync(FIXTURES).filter((f) => f.endsWith('.txt')).sort()) {
    let current: { header: Record<string, string>; lines: string[] } | undefined;
    const flush = () => {
      if (current && current.lines.length > 0) cases.push({ file, header: current.header, text: current.lines.join('\n') });
      current = undefined;
    };
    for (const line of readFileSync(new URL(file, FIXTURES), 'utf8').split('\n')) {
      if (line.startsWith('#')) continue;
      if (line.startsWith('== ')) {
        flush();
        current = { header: Object.fromEntries(line.slice(3).trim().split(/\s+/).map((kv) => kv.split('=') as [string, string])), lines: [] };
      } else if (line.trim() === '') flush();
      else if (current) current.lines.push(line);
      else assert.fail(`${file}: reply text outside a case: ${line}`);
    }
    flush();
  }
  return cases;
}

describe('outcome: real server replies (test/fixtures/replies)', () => {
  const cases = loadCases();
  it('has fixtures from every family', () => {
    const files = new Set(cases.map((c) => c.file));
    for (const f of ['postfix.txt', 'exim.txt', 'gmail.txt', 'microsoft365.txt', 'quirks.txt']) assert.ok(files.has(f), f);
    assert.ok(cases.length >= 50, `${cases.length} cases`);
  });
  for (const c of cases) {
    const { step = '', kind, scope, enhanced } = c.header;
    it(`${c.file}: ${step} ${c.text.split('\n')[0]?.slice(0, 60)}`, () => {
      const reply = readReply(`${c.text}\n`);
      const out = classify({ kind: 'reply', step: step as ClientStepName, reply }, 3);
      assert.equal(brief(out), `${kind}/${scope}/${enhanced}`);
      assert.equal(out.recipient, 3);
      assert.equal(out.reply, c.text, 'the reply is kept verbatim');
      assert.equal(out.local, undefined);
    });
  }
});

describe('outcome: rules', () => {
  it('pre-flight refusals bounce the message with a local reply naming the reason', () => {
    const size = classify({ kind: 'preflight', check: 'size', detail: 'message size 101 exceeds the size limit 100 the peer announced' }, 0);
    assert.deepEqual(size, {
      recipient: 0,
      kind: 'bounced',
      scope: 'message',
      reply: '552 5.3.4 message size 101 exceeds the size limit 100 the peer announced',
      enhanced: '5.3.4',
      local: true,
    });
    assert.equal(brief(classify({ kind: 'preflight', check: 'smtputf8', detail: 'x' }, 0)), 'bounced/message/5.6.7');
    assert.equal(brief(classify({ kind: 'preflight', check: 'binarymime', detail: 'x' }, 0)), 'bounced/message/5.6.3');
  });

  it('a connection lost after the final dot and before its reply is ambiguous; elsewhere deferred', () => {
    const amb = classify({ kind: 'interrupted', step: 'data-end', cause: 'connection-lost', ambiguous: true, detail: 'ECONNRESET' }, 1);
    assert.deepEqual(amb, {
      recipient: 1,
      kind: 'ambiguous',
      scope: 'message',
      reply: '451 4.4.2 lost connection while waiting for the reply to end-of-data -- message may be sent more than once (ECONNRESET)',
      enhanced: '4.4.2',
      local: true,
    });
    const mid = classify({ kind: 'interrupted', step: 'data-block', cause: 'timeout', ambiguous: false }, 1);
    assert.equal(brief(mid), 'deferred/destination/4.4.2');
    assert.equal(mid.reply, '451 4.4.2 conversation timed out while sending the message body');
    assert.equal(brief(classify({ kind: 'interrupted', step: 'connect', cause: 'connection-lost', ambiguous: false, detail: 'ECONNREFUSED' }, 0)), 'deferred/destination/4.4.1');
  });

  it('a framing fault holds the message', () => {
    const o = classify({ kind: 'framing-fault', step: 'data-block', reason: 'the peer replied (250) before our end-of-data' }, 0);
    assert.equal(brief(o), 'held/message/4.5.0');
    assert.match(o.reply, /^451 4\.5\.0 framing fault while sending the message body: the peer replied/);
  });

  it('421 at any step defers the destination', () => {
    for (const step of ['banner', 'ehlo', 'mail', 'rcpt', 'data-init', 'data-block', 'data-end', 'bdat', 'bdat-last'] as const) {
      assert.equal(brief(classify(fact(step, '421 4.3.2 shutting down'), 0)), 'deferred/destination/4.3.2', step);
    }
  });

  it('552 to RCPT reads as 452; 552 elsewhere stays permanent', () => {
    assert.equal(brief(classify(fact('rcpt', '552 5.5.3 Too many recipients'), 0)), 'deferred/recipient/4.5.3');
    assert.equal(brief(classify(fact('data-end', '552 5.3.4 too big'), 0)), 'bounced/message/5.3.4');
    assert.equal(brief(classify(fact('mail', '552 5.3.4 too big'), 0)), 'bounced/message/5.3.4');
  });

  it('5xx greeting or HELO: destination scope, so the caller tries the next MX first', () => {
    assert.equal(brief(classify(fact('banner', '554 5.7.1 go away'), 0)), 'bounced/destination/5.7.1');
    assert.equal(brief(classify(fact('helo', '550 5.7.1 no'), 0)), 'bounced/destination/5.7.1');
  });

  it('classifyTransaction renumbers; classifySession covers every recipient', () => {
    const facts = [fact('data-end', '250 2.0.0 Ok'), fact('rcpt', '550 5.1.1 unknown')];
    assert.deepEqual(classifyTransaction(facts, [7, 9]).map((o) => [o.recipient, o.kind]), [[7, 'delivered'], [9, 'bounced']]);
    assert.deepEqual(classifyTransaction(facts).map((o) => o.recipient), [0, 1]);
    const all = classifySession(fact('banner', '421 4.7.0 too many connections'), [2, 4, 6]);
    assert.deepEqual(all.map((o) => `${o.recipient} ${brief(o)}`), ['2 deferred/destination/4.7.0', '4 deferred/destination/4.7.0', '6 deferred/destination/4.7.0']);
  });

  it('verbatim joins lines with \\n and keeps codes', () => {
    assert.equal(verbatim({ code: 550, enhanced: '5.1.1', lines: ['a', 'b'] }), '550-5.1.1 a\n550 5.1.1 b');
    assert.equal(verbatim({ code: 250, lines: ['ok'] }), '250 ok');
  });
});

describe('outcome: whole dialogues through the client session', () => {
  function mbox(a: string) {
    const p = parseForwardPath(`<${a}>`);
    if (!p.ok) throw new Error(p.reason);
    return p.path;
  }
  const msg = (to: string[]): OutboundMessage => ({
    sender: mbox('alice@example.com'),
    recipients: to.map((a) => ({ mailbox: mbox(a) })),
    body: '7BIT',
    smtputf8: false,
    size: 10,
  });

  /** Runs a dialogue; `cut` interrupts the connection after that many replies. */
  function outcomes(server: string, m: OutboundMessage, cut?: number): Outcome[] {
    const s = new ClientSession({ hostname: 'relay.test' });
    const replies = new ReplyReader().push(Buffer.from(server.replace(/\n/g, '\r\n')));
    const found: Outcome[] = [];
    const handle = (events: ClientEvent[]): void => {
      for (const e of events) {
        if (e.kind === 'ready' && found.length === 0) handle(s.send(m));
        if (e.kind === 'send-body' && e.mode === 'data') {
          s.dataChunk(Buffer.from('hello\r\n'));
          s.dataEnd();
        }
        if (e.kind === 'transaction') found.push(...classifyTransaction(e.facts));
        if (e.kind === 'session-failed') found.push(...classifySession(e.fact, m.recipients.map((_, i) => i)));
      }
    };
    replies.slice(0, cut).forEach((r) => handle(s.receive(r)));
    if (cut !== undefined) handle(s.interrupted('connection-lost'));
    return found;
  }
  const EHLO = '220 mx\n250-mx\n250-PIPELINING\n250 SIZE 1000\n';

  it('550 on one of two recipients: one delivered, one bounced with the 550 verbatim', () => {
    const o = outcomes(`${EHLO}250 Ok\n250 Ok\n550 5.1.1 <b@example.org>: User unknown\n354 go\n250 2.0.0 queued\n`, msg(['a@example.org', 'b@example.org']));
    assert.deepEqual(o.map(brief), ['delivered/message/2.0.0', 'bounced/recipient/5.1.1']);
    assert.equal(o[1]?.reply, '550 5.1.1 <b@example.org>: User unknown');
  });

  it('421 mid-RCPT defers everyone at destination scope', () => {
    const o = outcomes(`${EHLO}250 Ok\n250 Ok\n421 4.7.0 bye\n`, msg(['a@example.org', 'b@example.org', 'c@example.org']));
    assert.deepEqual(o.map(brief), Array(3).fill('deferred/destination/4.7.0'));
  });

  it('451 after end-of-data defers the message; the RFC 1047 window is ambiguous', () => {
    assert.deepEqual(outcomes(`${EHLO}250 Ok\n250 Ok\n354 go\n451 4.3.0 later\n`, msg(['a@example.org'])).map(brief), ['deferred/message/4.3.0']);
    // Cut after 354: the body and the dot were written; no reply came.
    assert.deepEqual(outcomes(`${EHLO}250 Ok\n250 Ok\n354 go\n`, msg(['a@example.org']), 5).map(brief), ['ambiguous/message/4.4.2']);
    // Cut after MAIL's reply: plainly deferred.
    assert.deepEqual(outcomes(`${EHLO}250 Ok\n250 Ok\n354 go\n`, msg(['a@example.org']), 3).map(brief), ['deferred/destination/4.4.2']);
  });

  it('a reply before end-of-data is held, never delivered', () => {
    const s = new ClientSession({ hostname: 'relay.test' });
    const reader = new ReplyReader();
    const events: ClientEvent[] = [];
    for (const r of reader.push(Buffer.from(`${EHLO}`.replace(/\n/g, '\r\n')))) events.push(...s.receive(r));
    s.send(msg(['a@example.org']));
    for (const r of reader.push(Buffer.from('250 Ok\r\n250 Ok\r\n354 go\r\n250 2.0.0 queued\r\n'))) events.push(...s.receive(r));
    const t = events.find((e) => e.kind === 'transaction');
    assert.deepEqual(t?.kind === 'transaction' && classifyTransaction(t.facts).map(brief), ['held/message/4.5.0']);
  });
});

describe('outcome: properties', () => {
  const STEPS: ClientStepName[] = ['connect', 'banner', 'ehlo', 'helo', 'mail', 'rcpt', 'data-init', 'data-block', 'data-end', 'bdat', 'bdat-last', 'rset', 'quit'];
  const arbReply = fc.record({
    code: fc.integer({ min: 200, max: 599 }),
    enhanced: fc.option(fc.tuple(fc.constantFrom('2', '4', '5'), fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 999 })).map(([c, a, b]) => `${c}.${a}.${b}`), { nil: undefined }),
    lines: fc.array(fc.string({ maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, ' ')), { minLength: 1, maxLength: 3 }),
  }).map(({ code, enhanced, lines }): Reply => (enhanced === undefined ? { code, lines } : { code, enhanced, lines }));
  const arbFact: fc.Arbitrary<AttemptFact> = fc.oneof(
    fc.record({ kind: fc.constant('reply' as const), step: fc.constantFrom(...STEPS), reply: arbReply }),
    fc.record({ kind: fc.constant('interrupted' as const), step: fc.constantFrom(...STEPS), cause: fc.constantFrom('connection-lost' as const, 'timeout' as const), ambiguous: fc.boolean() }),
    fc.record({ kind: fc.constant('framing-fault' as const), step: fc.constantFrom(...STEPS), reason: fc.string() }),
    fc.record({ kind: fc.constant('preflight' as const), check: fc.constantFrom('size' as const, 'smtputf8' as const, 'binarymime' as const), detail: fc.string() }),
  );

  it('every fact classifies; the status class agrees with the kind; the reply starts with a code', () => {
    const CLASS: Record<Outcome['kind'], string> = { delivered: '2', deferred: '4', ambiguous: '4', held: '4', bounced: '5' };
    fc.assert(
      fc.property(arbFact, fc.nat(), (f, n) => {
        const o = classify(f, n);
        assert.equal(o.recipient, n);
        assert.equal(o.enhanced?.[0], CLASS[o.kind]);
        assert.match(o.reply, /^[2-5]\d\d(?:[ -]|$|\n)/);
        if (o.kind === 'delivered') assert.ok(f.kind === 'reply' && (f.step === 'data-end' || f.step === 'bdat-last') && f.reply.code < 300);
      }),
      { numRuns: 2000 },
    );
  });
});
