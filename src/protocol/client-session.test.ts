/**
 * ClientSession, driven without sockets. Each test is a scripted dialogue: the server's whole
 * output as text, pushed through a ReplyReader in chunks (one push, every two-piece split,
 * byte by byte), and a driver that plays delivery/connection: it writes what the machine asks,
 * streams the body the moment it is asked (as a real client would, before reading on), sends
 * the next message on `ready` and QUIT when none is left. Assertions are on the client's writes
 * (their boundaries show the pipelining groups) and on the facts per recipient.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { parseForwardPath } from './address.js';
import { CLIENT_STEPS, ClientSession, parseEhlo } from './client-session.js';
import type { AttemptFact, ClientEvent, ClientSessionOptions, ClientStepName, OutboundMessage } from './client-session.js';
import { ProtocolError, ReplyReader } from './reply.js';
import { bytes, bytewise, everySplit } from './testkit.js';
import type { Mailbox, Reply } from './types.js';

function mbox(address: string): Mailbox {
  const p = parseForwardPath(`<${address}>`);
  if (!p.ok) throw new Error(p.reason);
  return p.path;
}

function message(overrides: Partial<OutboundMessage> & { to?: string[] } = {}): OutboundMessage {
  const { to = ['bob@example.org'], ...rest } = overrides;
  return {
    sender: mbox('alice@example.com'),
    recipients: to.map((a) => ({ mailbox: mbox(a) })),
    body: '7BIT',
    smtputf8: false,
    size: BODY.length,
    ...rest,
  };
}

const BODY = 'Subject: hi\r\n\r\n.leading dot\r\nbye\r\n';
const EHLO_FULL = '250-mx.example.org\n250-PIPELINING\n250-SIZE 10240000\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 ENHANCEDSTATUSCODES\n';
const EHLO_PLAIN = '250-mx.example.org\n250 SIZE 10240000\n';
const EHLO_CHUNKING = '250-mx.example.org\n250-PIPELINING\n250-CHUNKING\n250-BINARYMIME\n250 8BITMIME\n';

interface Run {
  /** Every write, in order, as latin1 text. */
  readonly writes: string[];
  readonly events: ClientEvent[];
  /** One entry per transaction event. */
  readonly facts: (readonly AttemptFact[])[];
  readonly sessionFailures: AttemptFact[];
  readonly framingFaults: string[];
  readonly closed: string | undefined;
  readonly session: ClientSession;
}

interface DriverOptions extends Partial<ClientSessionOptions> {
  /** BDAT chunk size for the body (default: whole body in one chunk). */
  readonly chunk?: number;
  /** Call rset() before every message after the first. */
  readonly rsetBetween?: boolean;
  /** Do not stream the body when asked (to test replies that come too early). */
  readonly holdBody?: boolean;
}

/** Plays the connection: server text in (as chunks), writes and facts out. */
function drive(server: string, messages: OutboundMessage[], pieces?: Buffer[], opts: DriverOptions = {}): Run {
  const session = new ClientSession({ hostname: 'relay.postwire.test', ...opts });
  const reader = new ReplyReader();
  const writes: string[] = [];
  const events: ClientEvent[] = [];
  const facts: (readonly AttemptFact[])[] = [];
  const sessionFailures: AttemptFact[] = [];
  const framingFaults: string[] = [];
  let closed: string | undefined;
  const queue = [...messages];
  let sentOne = false;
  let justReset = false;
  let bodyAt = 0;
  const body = Buffer.from(BODY, 'latin1');

  const handle = (list: ClientEvent[]): void => {
    for (const e of list) {
      events.push(e);
      switch (e.kind) {
        case 'write':
          writes.push(e.data);
          break;
        case 'ready': {
          const next = queue[0];
          if (next === undefined) handle(session.quit());
          else if (opts.rsetBetween && sentOne && !justReset) {
            justReset = true;
            handle(session.rset());
          } else {
            queue.shift();
            sentOne = true;
            justReset = false;
            bodyAt = 0;
            handle(session.send(next));
          }
          break;
        }
        case 'send-body':
          if (opts.holdBody) break;
          if (e.mode === 'data') {
            writes.push(Buffer.concat([...session.dataChunk(body.subarray(0, 7)), ...session.dataChunk(body.subarray(7))]).toString('latin1'));
            writes.push(session.dataEnd().toString('latin1'));
          } else {
            // Resumes where it stopped: a lock-step peer asks again after each chunk's reply.
            const size = opts.chunk ?? body.length;
            while (bodyAt < body.length && session.sending === 'bdat') {
              const piece = body.subarray(bodyAt, bodyAt + size);
              bodyAt += piece.length;
              writes.push(session.bdatChunk(piece.length, bodyAt >= body.length) + piece.toString('latin1'));
            }
          }
          break;
        case 'transaction':
          facts.push(e.facts);
          break;
        case 'session-failed':
          sessionFailures.push(e.fact);
          break;
        case 'framing-fault':
          framingFaults.push(e.reason);
          break;
        case 'close':
          closed = e.reason;
          break;
        case 'stop-body':
          break;
      }
    }
  };
  for (const piece of pieces ?? [wire(server)]) {
    for (const r of reader.push(piece)) handle(session.receive(r));
  }
  return { writes, events, facts, sessionFailures, framingFaults, closed, session };
}

/** Server text with LF line ends → CRLF bytes. */
function wire(text: string): Buffer {
  return bytes(text.replace(/\r?\n/g, '\r\n'));
}

/** The same dialogue in one push, at every two-piece split and byte by byte: same result. */
function driveEverySplit(server: string, messages: OutboundMessage[], opts: DriverOptions = {}): Run {
  const whole = drive(server, messages, undefined, opts);
  const strip = (r: Run) => ({ writes: r.writes, events: r.events });
  for (const pieces of everySplit(wire(server))) assert.deepEqual(strip(drive(server, messages, pieces, opts)), strip(whole));
  assert.deepEqual(strip(drive(server, messages, bytewise(wire(server)), opts)), strip(whole));
  return whole;
}

function replyFact(f: AttemptFact | undefined): string {
  if (f === undefined) return 'none';
  if (f.kind === 'reply') return `${f.step} ${f.reply.code}`;
  if (f.kind === 'preflight') return `preflight ${f.check}`;
  return `${f.kind} ${f.step}`;
}

const STUFFED = 'Subject: hi\r\n\r\n..leading dot\r\nbye\r\n';

describe('ClientSession: pipelined peer', () => {
  it('sends MAIL, every RCPT and DATA in one write, then the stuffed body; 250 delivers both', () => {
    const server = `220 mx.example.org ESMTP\n${EHLO_FULL}250 2.1.0 Ok\n250 2.1.5 Ok\n250 2.1.5 Ok\n354 End data with <CR><LF>.<CR><LF>\n250 2.0.0 Ok: queued as ABC\n221 2.0.0 Bye\n`;
    const run = driveEverySplit(server, [message({ to: ['bob@example.org', 'carol@example.org'] })]);
    assert.deepEqual(run.writes, [
      'EHLO relay.postwire.test\r\n',
      `MAIL FROM:<alice@example.com> SIZE=${BODY.length}\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n`,
      STUFFED,
      '.\r\n',
      'QUIT\r\n',
    ]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['data-end 250', 'data-end 250']]);
    assert.equal(run.closed, 'QUIT answered');
    assert.deepEqual(run.framingFaults, []);
  });

  it('a 550 on one of two recipients: the other is delivered, the refused one keeps its reply', () => {
    const server = `220 mx\n${EHLO_FULL}250 2.1.0 Ok\n250 2.1.5 Ok\n550 5.1.1 <carol@example.org>: Recipient address rejected: User unknown\n354 go\n250 2.0.0 Ok: queued\n221 Bye\n`;
    const run = driveEverySplit(server, [message({ to: ['bob@example.org', 'carol@example.org'] })]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['data-end 250', 'rcpt 550']]);
    const refused = run.facts[0]?.[1];
    assert.equal(refused?.kind === 'reply' && refused.reply.enhanced, '5.1.1');
  });

  it('421 mid-RCPT: every recipient gets the 421, nothing more is written, the session closes', () => {
    const server = `220 mx\n${EHLO_FULL}250 2.1.0 Ok\n250 2.1.5 Ok\n421 4.7.0 mx Error: too many errors\n`;
    const run = driveEverySplit(server, [message({ to: ['a@example.org', 'b@example.org', 'c@example.org'] })]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['rcpt 421', 'rcpt 421', 'rcpt 421']]);
    assert.equal(run.writes.at(-1)?.startsWith('MAIL FROM'), true, 'no QUIT after 421');
    assert.match(run.closed ?? '', /421/);
    assert.equal(run.session.closed, true);
  });

  it('451 after end-of-data: the final reply decides every accepted recipient', () => {
    const server = `220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n354 go\n451 4.3.0 Error: queue file write error\n221 Bye\n`;
    const run = driveEverySplit(server, [message()]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['data-end 451']]);
    assert.equal(run.writes.at(-1), 'QUIT\r\n');
  });

  it('MAIL refused: the RCPT and DATA replies that follow are consequences, not causes', () => {
    const server = `220 mx\n${EHLO_FULL}553 5.7.1 <alice@example.com>: Sender address rejected\n503 5.5.1 need MAIL\n503 5.5.1 need MAIL\n503 5.5.1 need MAIL\n221 Bye\n`;
    const run = driveEverySplit(server, [message({ to: ['a@example.org', 'b@example.org'] })]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['mail 553', 'mail 553']]);
    assert.deepEqual(run.writes.slice(2), ['QUIT\r\n'], 'no RSET: the peer holds no transaction');
  });

  it('every RCPT refused and DATA refused: RSET, then the next message', () => {
    const server = `220 mx\n${EHLO_FULL}250 Ok\n550 5.1.1 no\n554 5.5.1 Error: no valid recipients\n250 2.0.0 Ok\n250 Ok\n250 Ok\n354 go\n250 2.0.0 queued\n221 Bye\n`;
    const run = driveEverySplit(server, [message(), message()]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['rcpt 550'], ['data-end 250']]);
    assert.equal(run.writes[2], 'RSET\r\n');
  });

  it('every RCPT refused and DATA answered 354 anyway: a single dot (RFC 2920 §3.1)', () => {
    const server = `220 mx\n${EHLO_FULL}250 Ok\n550 5.1.1 no\n354 go\n554 5.5.1 no valid recipients\n221 Bye\n`;
    const run = driveEverySplit(server, [message()]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['rcpt 550']]);
    assert.deepEqual(run.writes.slice(2), ['.\r\n', 'QUIT\r\n']);
    assert.deepEqual(run.framingFaults, []);
  });

  it('DSN, SMTPUTF8 and BODY parameters go out only because the peer offers them', () => {
    const m = message({
      body: '8BITMIME',
      smtputf8: true,
      ret: 'HDRS',
      envid: 'env+1',
      recipients: [{ mailbox: mbox('bob@example.org'), params: { notify: ['FAILURE', 'DELAY'], orcpt: { addrType: 'rfc822', address: 'bob@example.org' } } }],
    });
    const full = drive(`220 mx\n${EHLO_FULL}`, [m]);
    assert.equal(
      full.writes[1],
      `MAIL FROM:<alice@example.com> BODY=8BITMIME SIZE=${BODY.length} SMTPUTF8 RET=HDRS ENVID=env+2B1\r\nRCPT TO:<bob@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.org\r\nDATA\r\n`,
    );
    const plain = drive(`220 mx\n250-mx\n250-PIPELINING\n250 SMTPUTF8\n`, [m]);
    assert.equal(plain.writes[1], 'MAIL FROM:<alice@example.com> SMTPUTF8\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n');
  });
});

describe('ClientSession: non-pipelined peer', () => {
  it('one command per write, waiting for each reply', () => {
    const server = `220 mx\n${EHLO_PLAIN}250 Ok\n250 Ok\n550 5.1.1 no\n354 go\n250 queued\n221 Bye\n`;
    const run = driveEverySplit(server, [message({ to: ['a@example.org', 'b@example.org'] })]);
    assert.deepEqual(run.writes, [
      'EHLO relay.postwire.test\r\n',
      `MAIL FROM:<alice@example.com> SIZE=${BODY.length}\r\n`,
      'RCPT TO:<a@example.org>\r\n',
      'RCPT TO:<b@example.org>\r\n',
      'DATA\r\n',
      STUFFED,
      '.\r\n',
      'QUIT\r\n',
    ]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['data-end 250', 'rcpt 550']]);
  });

  it('no recipient accepted: RSET instead of DATA', () => {
    const server = `220 mx\n${EHLO_PLAIN}250 Ok\n550 no\n450 4.2.0 greylisted\n250 Ok\n221 Bye\n`;
    const run = driveEverySplit(server, [message({ to: ['a@example.org', 'b@example.org'] })]);
    assert.deepEqual(run.writes.slice(4), ['RSET\r\n', 'QUIT\r\n']);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['rcpt 550', 'rcpt 450']]);
  });

  it('EHLO refused with 5xx: falls back to HELO, sends no ESMTP parameters, and an 8-bit body anyway', () => {
    for (const refusal of ['500 5.5.1 Command unrecognized', '502 Not implemented', '504 no', '550 go away']) {
      const server = `220 old.example.org SMTP\n${refusal}\n250 old.example.org\n250 Ok\n250 Ok\n354 go\n250 Ok\n221 Bye\n`;
      const run = driveEverySplit(server, [message({ body: '8BITMIME' })]);
      assert.deepEqual(run.writes.slice(0, 4), ['EHLO relay.postwire.test\r\n', 'HELO relay.postwire.test\r\n', 'MAIL FROM:<alice@example.com>\r\n', 'RCPT TO:<bob@example.org>\r\n']);
      assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['data-end 250']]);
      assert.equal(run.session.capabilities.esmtp, false);
    }
  });

  it('EHLO refused with 4xx, or HELO refused: the session fails for every recipient', () => {
    const a = drive('220 mx\n451 4.3.0 try later\n221 Bye\n', [message()]);
    assert.deepEqual(a.sessionFailures.map(replyFact), ['ehlo 451']);
    assert.deepEqual(a.writes, ['EHLO relay.postwire.test\r\n', 'QUIT\r\n']);
    const b = drive('220 mx\n502 no\n501 5.5.2 Helo command rejected\n221 Bye\n', [message()]);
    assert.deepEqual(b.sessionFailures.map(replyFact), ['helo 501']);
    assert.deepEqual(b.facts, []);
  });
});

describe('ClientSession: greeting', () => {
  it('a 554 banner fails the session and still says QUIT (RFC 5321 §3.1); 421 just closes', () => {
    const a = driveEverySplit('554 5.7.1 mx.example.org no SMTP service here\n221 Bye\n', [message()]);
    assert.deepEqual(a.sessionFailures.map(replyFact), ['banner 554']);
    assert.deepEqual(a.writes, ['QUIT\r\n']);
    assert.equal(a.closed, 'QUIT answered');
    const b = driveEverySplit('421 4.3.2 mx.example.org Service not available, closing channel\n', [message()]);
    assert.deepEqual(b.sessionFailures.map(replyFact), ['banner 421']);
    assert.deepEqual(b.writes, []);
    assert.match(b.closed ?? '', /421/);
  });

  it('multi-line banners and EHLO replies in any chunking', () => {
    const server = `220-mx.example.org ESMTP\n220-no UCE\n220 really\n${EHLO_FULL}`;
    const run = driveEverySplit(server, []);
    assert.equal(run.session.capabilities.pipelining, true);
    assert.deepEqual(run.writes, ['EHLO relay.postwire.test\r\n', 'QUIT\r\n']);
  });
});

describe('ClientSession: pre-flight refusals', () => {
  it('larger than the peer’s SIZE: 5.3.4 material, nothing written', () => {
    const run = drive('220 mx\n250-mx\n250 SIZE 100\n221 Bye\n', [message({ size: 101, to: ['a@example.org', 'b@example.org'] })]);
    assert.deepEqual(run.facts, [[
      { kind: 'preflight', check: 'size', detail: 'message size 101 exceeds the size limit 100 the peer announced' },
      { kind: 'preflight', check: 'size', detail: 'message size 101 exceeds the size limit 100 the peer announced' },
    ]]);
    assert.deepEqual(run.writes, ['EHLO relay.postwire.test\r\n', 'QUIT\r\n']);
    // SIZE 0 and a bare SIZE mean no fixed limit (RFC 1870).
    assert.deepEqual(drive('220 mx\n250-mx\n250 SIZE 0\n', [message({ size: 1e9 })]).facts, []);
  });

  it('needs SMTPUTF8 (flag or a UTF-8 address) and the peer lacks it: 5.6.7 material', () => {
    for (const m of [message({ smtputf8: true }), message({ to: ['jörg@example.org'] })]) {
      const run = drive(`220 mx\n${EHLO_PLAIN}`, [m]);
      assert.deepEqual(run.facts.map((fs) => fs.map((f) => f.kind === 'preflight' && f.check)), [['smtputf8']]);
    }
  });

  it('BINARYMIME without BINARYMIME+CHUNKING: 5.6.3 material; with both it goes by BDAT', () => {
    const m = message({ body: 'BINARYMIME' });
    const refused = drive('220 mx\n250-mx\n250-PIPELINING\n250 CHUNKING\n', [m]);
    assert.deepEqual(refused.facts.map((fs) => fs.map((f) => f.kind === 'preflight' && f.check)), [['binarymime']]);
    const ok = drive(`220 mx\n${EHLO_CHUNKING}250 Ok\n250 Ok\n250 2.0.0 ${BODY.length} octets, queued\n`, [m]);
    assert.equal(ok.writes[1], 'MAIL FROM:<alice@example.com> BODY=BINARYMIME\r\nRCPT TO:<bob@example.org>\r\n');
    assert.deepEqual(ok.facts.map((fs) => fs.map(replyFact)), [['bdat-last 250']]);
  });
});

describe('ClientSession: BDAT', () => {
  it('chunks pipelined, one reply per chunk, the LAST reply decides', () => {
    const server = `220 mx\n${EHLO_CHUNKING}250 Ok\n250 Ok\n250 Ok\n250 2.0.0 16 octets\n250 2.0.0 16 octets\n250 2.0.0 queued\n221 Bye\n`;
    const run = driveEverySplit(server, [message({ to: ['a@example.org', 'b@example.org'] })], { chunk: 16 });
    assert.deepEqual(run.writes, [
      'EHLO relay.postwire.test\r\n',
      'MAIL FROM:<alice@example.com>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n',
      `BDAT 16\r\n${BODY.slice(0, 16)}`,
      `BDAT 16\r\n${BODY.slice(16, 32)}`,
      `BDAT ${BODY.length - 32} LAST\r\n${BODY.slice(32)}`,
      'QUIT\r\n',
    ]);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['bdat-last 250', 'bdat-last 250']]);
  });

  it('without PIPELINING, one chunk at a time: each reply asks for the next', () => {
    const server = `220 mx\n250-mx\n250 CHUNKING\n250 Ok\n250 Ok\n250 2.0.0 16 octets\n250 2.0.0 16 octets\n250 2.0.0 queued\n221 Bye\n`;
    const run = driveEverySplit(server, [message()], { chunk: 16 });
    assert.deepEqual(run.writes, [
      'EHLO relay.postwire.test\r\n',
      'MAIL FROM:<alice@example.com>\r\n',
      'RCPT TO:<bob@example.org>\r\n',
      `BDAT 16\r\n${BODY.slice(0, 16)}`,
      `BDAT 16\r\n${BODY.slice(16, 32)}`,
      `BDAT ${BODY.length - 32} LAST\r\n${BODY.slice(32)}`,
      'QUIT\r\n',
    ]);
    assert.deepEqual(run.events.filter((e) => e.kind === 'send-body').length, 3);
    const s = new ClientSession({ hostname: 'h' });
    const reader = new ReplyReader();
    for (const r of reader.push(wire('220 mx\n250-mx\n250 CHUNKING\n'))) s.receive(r);
    s.send(message());
    for (const r of reader.push(wire('250 Ok\n250 Ok\n'))) s.receive(r);
    s.bdatChunk(3, false);
    assert.equal(s.sending, undefined);
    assert.throws(() => s.bdatChunk(3, true), (e: unknown) => e instanceof ProtocolError && e.code === 'CLIENT_MISUSE');
  });

  it('a refused chunk decides the message, later replies are drained, then RSET', () => {
    const server = `220 mx\n${EHLO_CHUNKING}250 Ok\n250 Ok\n250 Ok\n552 5.3.4 too big\n503 5.5.1 earlier chunk failed\n250 Ok\n221 Bye\n`;
    const run = driveEverySplit(server, [message()], { chunk: 16 });
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['bdat 552']]);
    assert.deepEqual(run.writes.slice(-2), ['RSET\r\n', 'QUIT\r\n']);
  });

  it('stop-body: once a chunk is refused, no further chunk is wanted', () => {
    const s = new ClientSession({ hostname: 'h' });
    const reader = new ReplyReader();
    const feed = (t: string) => reader.push(wire(t)).flatMap((r) => s.receive(r));
    feed(`220 mx\n${EHLO_CHUNKING}`);
    s.send(message());
    assert.deepEqual(feed('250 Ok\n250 Ok\n'), [{ kind: 'send-body', mode: 'bdat' }]);
    s.bdatChunk(10, false);
    s.bdatChunk(10, false);
    const events = feed('451 4.3.0 disk\n');
    assert.deepEqual(events.map((e) => e.kind), ['transaction', 'stop-body']);
    assert.equal(s.sending, undefined);
    assert.throws(() => s.bdatChunk(1, true), (e: unknown) => e instanceof ProtocolError && e.code === 'CLIENT_MISUSE');
    assert.deepEqual(feed('503 no\n').map((e) => e.kind), ['write']);
    assert.equal(s.awaiting, 'rset');
  });
});

describe('ClientSession: framing faults (the founding bug)', () => {
  it('a reply before our end-of-data is a framing fault, never consumed as the final reply', () => {
    const server = `220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n354 go\n250 2.0.0 Ok: queued\n`;
    const run = drive(server, [message()], undefined, { holdBody: true });
    assert.deepEqual(run.framingFaults, ['the peer replied (250 2.0.0 Ok: queued) before our end-of-data']);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['framing-fault data-block']]);
    assert.match(run.closed ?? '', /^framing fault/);
    assert.equal(run.session.sending, undefined);
    assert.throws(() => run.session.dataEnd(), (e: unknown) => e instanceof ProtocolError && e.code === 'CLIENT_MISUSE');
  });

  it('more replies than commands: a fault, even after a clean delivery', () => {
    const server = `220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n354 go\n250 2.0.0 queued\n250 2.0.0 queued again\n`;
    const s = new ClientSession({ hostname: 'h' });
    const reader = new ReplyReader();
    const events: ClientEvent[] = [];
    for (const r of reader.push(wire(server))) {
      for (const e of s.receive(r)) {
        events.push(e);
        if (e.kind === 'ready' && events.filter((x) => x.kind === 'ready').length === 1) events.push(...s.send(message()));
        if (e.kind === 'send-body') {
          s.dataChunk(Buffer.from(BODY));
          s.dataEnd();
        }
      }
    }
    const kinds = events.map((e) => e.kind);
    assert.deepEqual(kinds, ['write', 'ready', 'write', 'send-body', 'transaction', 'ready', 'framing-fault', 'close']);
    const t = events.find((e) => e.kind === 'transaction');
    assert.deepEqual(t?.kind === 'transaction' && t.facts.map(replyFact), ['data-end 250'], 'the delivery stands');
  });

  it('250 to DATA (the peer would read the body as commands) is a framing fault', () => {
    const run = drive(`220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n250 Ok\n`, [message()]);
    assert.deepEqual(run.framingFaults, ['the peer answered DATA with 250 instead of 354']);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['framing-fault data-init']]);
  });

  it('a 354 to anything but DATA is a framing fault', () => {
    const run = drive(`220 mx\n${EHLO_FULL}250 Ok\n354 go ahead\n`, [message()]);
    assert.deepEqual(run.framingFaults, ['the peer answered RCPT with 354']);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['framing-fault rcpt']]);
    const after = drive(`220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n354 go\n354 again\n`, [message()]);
    assert.deepEqual(after.framingFaults, ['the peer answered end-of-data with 354']);
  });

  it('a fault while greeting fails the session, not a transaction', () => {
    const run = drive('354 hello?\n', [message()]);
    assert.deepEqual(run.framingFaults, ['the peer answered the connection (greeting) with 354']);
    assert.deepEqual(run.sessionFailures.map(replyFact), ['framing-fault banner']);
    assert.deepEqual(run.facts, []);
  });

  it('an unsolicited 421 while idle closes without a fault (RFC 5321 §3.8)', () => {
    const s = new ClientSession({ hostname: 'h' });
    const reader = new ReplyReader();
    const feed = (t: string) => reader.push(wire(t)).flatMap((r) => s.receive(r));
    assert.deepEqual(feed(`220 mx\n${EHLO_FULL}`).map((e) => e.kind), ['write', 'ready']);
    assert.deepEqual(feed('421 4.4.2 mx Error: timeout exceeded\n'), [{ kind: 'close', reason: 'the peer closed the session (421)' }]);
    assert.deepEqual(feed('250 late\n'), [], 'a closed session ignores what follows');
  });

  it('421 during the body defers the message rather than faulting', () => {
    const run = drive(`220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n354 go\n421 4.3.2 shutting down\n`, [message()], undefined, { holdBody: true });
    assert.deepEqual(run.framingFaults, []);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['data-block 421']]);
  });

  it('fault(): the caller’s own byte-count check goes through the same path', () => {
    const s = new ClientSession({ hostname: 'h' });
    const reader = new ReplyReader();
    for (const r of reader.push(wire(`220 mx\n${EHLO_FULL}`))) s.receive(r);
    s.send(message());
    for (const r of reader.push(wire('250 Ok\n250 Ok\n354 go\n'))) s.receive(r);
    s.dataChunk(Buffer.from('short'));
    const events = s.fault('read 5 octets, accepted 34');
    assert.deepEqual(events.map((e) => e.kind), ['framing-fault', 'transaction', 'close']);
    assert.equal(s.bodyOctets, 5);
  });
});

describe('ClientSession: the ambiguous window and interruptions', () => {
  function atBody(mode: 'data' | 'bdat'): ClientSession {
    const s = new ClientSession({ hostname: 'h' });
    const reader = new ReplyReader();
    const feed = (t: string) => reader.push(wire(t)).flatMap((r) => s.receive(r));
    feed(`220 mx\n${mode === 'data' ? EHLO_FULL : EHLO_CHUNKING}`);
    s.send(message());
    feed(mode === 'data' ? '250 Ok\n250 Ok\n354 go\n' : '250 Ok\n250 Ok\n');
    return s;
  }

  it('DATA: not ambiguous while streaming, ambiguous from the terminator until its reply', () => {
    const s = atBody('data');
    assert.equal(s.awaiting, 'data-block');
    s.dataChunk(Buffer.from(BODY));
    assert.equal(s.ambiguous, false);
    assert.deepEqual(s.dataEnd(), Buffer.from('.\r\n'));
    assert.equal(s.ambiguous, true);
    assert.equal(s.awaiting, 'data-end');
    const events = s.interrupted('connection-lost', 'ECONNRESET');
    assert.deepEqual(events[0], {
      kind: 'transaction',
      facts: [{ kind: 'interrupted', step: 'data-end', cause: 'connection-lost', ambiguous: true, detail: 'ECONNRESET' }],
    });
    assert.equal(events[1]?.kind, 'close');
    assert.equal(s.ambiguous, false);
  });

  it('DATA: a loss mid-body is a plain interruption, not ambiguous', () => {
    const s = atBody('data');
    s.dataChunk(Buffer.from(BODY));
    const [t] = s.interrupted('timeout');
    assert.deepEqual(t, { kind: 'transaction', facts: [{ kind: 'interrupted', step: 'data-block', cause: 'timeout', ambiguous: false }] });
  });

  it('BDAT: ambiguous once LAST is written, even while an earlier chunk reply is awaited', () => {
    const s = atBody('bdat');
    s.bdatChunk(4, false);
    assert.equal(s.ambiguous, false);
    s.bdatChunk(4, true);
    assert.equal(s.awaiting, 'bdat');
    assert.equal(s.ambiguous, true);
    const [t] = s.interrupted('connection-lost');
    assert.equal(t?.kind === 'transaction' && t.facts[0]?.kind === 'interrupted' && t.facts[0].ambiguous, true);
  });

  it('before a transaction the loss fails the session; after the reply it is no longer ambiguous', () => {
    const s = new ClientSession({ hostname: 'h' });
    assert.equal(s.awaiting, 'banner');
    assert.deepEqual(s.interrupted('timeout').map((e) => e.kind), ['session-failed', 'close']);
    assert.deepEqual(s.interrupted('timeout'), []);
    const d = atBody('data');
    d.dataEnd();
    const reader = new ReplyReader();
    d.receive(reader.push(wire('250 Ok\n'))[0] as Reply);
    assert.equal(d.ambiguous, false);
  });
});

describe('ClientSession: reuse, steps, misuse', () => {
  it('two messages on one connection with RSET between', () => {
    const server = `220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n354 go\n250 Ok 1\n250 2.0.0 reset\n250 Ok\n250 Ok\n354 go\n250 Ok 2\n221 Bye\n`;
    const run = driveEverySplit(server, [message(), message({ to: ['carol@example.org'] })], { rsetBetween: true });
    assert.deepEqual(run.writes.filter((w) => /^[A-Z]{4}/.test(w)).map((w) => w.slice(0, 4)), ['EHLO', 'MAIL', 'RSET', 'MAIL', 'QUIT']);
    assert.deepEqual(run.facts.map((fs) => fs.map(replyFact)), [['data-end 250'], ['data-end 250']]);
  });

  it('a refused RSET means the connection is not reused: QUIT', () => {
    const run = drive(`220 mx\n${EHLO_FULL}250 Ok\n250 Ok\n354 go\n250 Ok\n500 what\n221 Bye\n`, [message(), message()], undefined, { rsetBetween: true });
    assert.deepEqual(run.writes.slice(-2), ['RSET\r\n', 'QUIT\r\n']);
    assert.equal(run.facts.length, 1);
  });

  it('awaiting walks the step table, every step has a timeout and a phrase', () => {
    const s = new ClientSession({ hostname: 'h' });
    const reader = new ReplyReader();
    const seen: (ClientStepName | undefined)[] = [s.awaiting];
    const feed = (t: string) => {
      for (const r of reader.push(wire(t))) s.receive(r);
      seen.push(s.awaiting);
    };
    feed('220 mx\n');
    feed(EHLO_PLAIN);
    s.send(message());
    seen.push(s.awaiting);
    feed('250 Ok\n');
    feed('250 Ok\n');
    feed('354 go\n');
    s.dataEnd();
    seen.push(s.awaiting);
    feed('250 Ok\n');
    s.quit();
    seen.push(s.awaiting);
    assert.deepEqual(seen, ['banner', 'ehlo', undefined, 'mail', 'rcpt', 'data-init', 'data-block', 'data-end', undefined, 'quit']);
    assert.equal(CLIENT_STEPS['data-init'].timeoutMs, 120_000);
    assert.equal(CLIENT_STEPS['data-end'].timeoutMs, 600_000);
    for (const step of Object.values(CLIENT_STEPS)) assert.ok(step.timeoutMs > 0 && step.phrase.length > 0 && step.source.length > 0);
  });

  it('driving it out of order throws CLIENT_MISUSE', () => {
    const s = new ClientSession({ hostname: 'h' });
    const misuse = (e: unknown) => e instanceof ProtocolError && e.code === 'CLIENT_MISUSE';
    assert.throws(() => s.send(message()), misuse);
    assert.throws(() => s.rset(), misuse);
    assert.throws(() => s.quit(), misuse);
    assert.throws(() => s.dataChunk(Buffer.from('x')), misuse);
    assert.throws(() => s.bdatChunk(1, true), misuse);
    const reader = new ReplyReader();
    for (const r of reader.push(wire(`220 mx\n${EHLO_FULL}`))) s.receive(r);
    assert.throws(() => s.send(message({ to: [] })), RangeError);
  });
});

describe('parseEhlo', () => {
  it('reads keywords, SIZE limits and AUTH in both forms', () => {
    const reader = new ReplyReader();
    const [r] = reader.push(wire('250-mx.example.org at your service\n250-size 35882577\n250-AUTH LOGIN PLAIN XOAUTH2\n250-AUTH=LOGIN\n250-STARTTLS\n250-CHUNKING\n250-BINARYMIME\n250 DSN\n'));
    const caps = parseEhlo(r as Reply);
    assert.equal(caps.greeting, 'mx.example.org at your service');
    assert.equal(caps.sizeLimit, 35882577);
    assert.deepEqual(caps.auth, ['LOGIN', 'PLAIN', 'XOAUTH2', 'LOGIN']);
    assert.equal(caps.starttls && caps.chunking && caps.binaryMime && caps.dsn, true);
    assert.equal(caps.pipelining || caps.smtputf8 || caps.eightBitMime, false);
    const bare = parseEhlo({ code: 250, lines: ['mx', 'SIZE'] });
    assert.equal(bare.size, true);
    assert.equal('sizeLimit' in bare, false);
  });
});

describe('ClientSession: property', () => {
  const CODES = [220, 221, 250, 250, 250, 250, 251, 252, 354, 354, 421, 450, 451, 452, 500, 501, 502, 503, 504, 550, 551, 552, 553, 554, 555];
  it('random replies never throw, and every recipient of every transaction gets exactly one fact', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...CODES), { maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
        fc.record({ pipelining: fc.boolean(), chunking: fc.boolean(), ehlo: fc.constantFrom(EHLO_FULL, EHLO_PLAIN, EHLO_CHUNKING, '') }),
        fc.constantFrom<'connection-lost' | 'timeout'>('connection-lost', 'timeout'),
        (codes, sizes, opts, cause) => {
          const messages = sizes.map((n, i) => message({ to: Array.from({ length: n }, (_, j) => `r${i}.${j}@example.org`) }));
          const server = `220 mx\n${opts.ehlo}${codes.map((c) => `${c} x\n`).join('')}`;
          const run = drive(server, messages, undefined, { pipelining: opts.pipelining, chunking: opts.chunking, chunk: 9 });
          const sends = run.events.filter((e, i) => e.kind === 'write' && /^MAIL /.test(e.data) && i >= 0).length;
          const preflights = run.facts.filter((fs) => fs[0]?.kind === 'preflight').length;
          // Flush: whatever is open ends with an interruption.
          const tail = run.session.interrupted(cause);
          const tailFacts = tail.flatMap((e) => (e.kind === 'transaction' ? [e.facts] : []));
          const all = [...run.facts, ...tailFacts];
          assert.equal(all.length, sends + preflights, 'one transaction event per send()');
          all.forEach((fs, i) => {
            assert.equal(fs.length, messages[i]?.recipients.length);
            for (const f of fs) assert.ok(f !== undefined);
          });
          assert.equal(run.session.closed, true);
        },
      ),
      { numRuns: 500 },
    );
  });
});
