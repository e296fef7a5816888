/**
 * ServerSession, driven without sockets: command lines go through parseCommand, decisions come
 * back, and the effects a decision asks for (policy, message store) are played by this file,
 * the way smtpd/connection plays them. Each test reads as a short transcript: `say(line)` sends
 * one command and returns the reply as it would go on the wire (`CODE ENH text`).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseCommand } from './command.js';
import { formatReply, reply } from './reply.js';
import { ServerSession } from './server-session.js';
import type { Decision, ServerSessionOptions } from './server-session.js';
import type { Reply } from './types.js';

const OPTIONS: ServerSessionOptions = {
  hostname: 'mx.postwire.test',
  maxRecipients: 3,
  maxMessageSize: 10_000,
  maxBadCommands: 5,
};

function session(overrides: Partial<ServerSessionOptions> = {}): ServerSession {
  return new ServerSession({ ...OPTIONS, ...overrides });
}

/** One reply as it goes on the wire, CRLFs dropped, lines joined with `|`. */
function wire(r: Reply): string {
  return formatReply(r).replace(/\r\n$/, '').split('\r\n').join('|');
}

interface Policy {
  /** Refuse MAIL/RCPT with this reply instead of accepting. */
  readonly refuseMail?: Reply;
  readonly refuseRcpt?: Reply;
}

/**
 * A driver that plays the connection's part for check-mail and check-rcpt (accept unless told
 * otherwise), and returns the decision for everything else untouched.
 */
function driver(s: ServerSession, policy: Policy = {}) {
  const decide = (line: string): Decision => s.receive(parseCommand(line));
  /** The reply the client would see for `line`; start-data and bdat decisions give their reply. */
  const say = (line: string): string => {
    const d = decide(line);
    switch (d.kind) {
      case 'reply':
        return wire(d.reply) + (d.close ? ' [close]' : '');
      case 'check-mail':
        return wire(policy.refuseMail ? s.mailRefused(policy.refuseMail) : s.mailAccepted(d.from, d.params));
      case 'check-rcpt':
        return wire(policy.refuseRcpt ? s.rcptRefused(policy.refuseRcpt) : s.rcptAccepted(d.to, d.params));
      case 'start-data':
        return wire(d.reply);
      case 'bdat':
        return d.reply ? wire(d.reply) : `bdat accept size=${d.size} last=${d.last} open=${d.open}`;
      case 'start-tls':
        return `${wire(d.reply)} [start-tls]`;
      case 'check-auth':
        return `check-auth ${d.credentials.mechanism} ${JSON.stringify([d.credentials.authzid, d.credentials.username, d.credentials.password])}`;
    }
  };
  return { decide, say };
}

function kindOf(d: Decision): string {
  return d.kind;
}

describe('ServerSession: command order', () => {
  it('greets with 220 and our name', () => {
    assert.equal(wire(session().greeting()), '220 mx.postwire.test ESMTP Postwire');
  });

  it('MAIL before EHLO is 503', () => {
    const { say } = driver(session());
    assert.equal(say('MAIL FROM:<a@x.example>'), '503 5.5.1 Send HELO or EHLO first');
  });

  it('RCPT before MAIL is 503', () => {
    const { say } = driver(session());
    say('EHLO client.example');
    assert.match(say('RCPT TO:<b@y.example>'), /^503 5\.5\.1 /);
  });

  it('DATA with no RCPT is 503, and BDAT likewise', () => {
    const s = session();
    const { say, decide } = driver(s);
    say('EHLO client.example');
    assert.match(say('DATA'), /^503 5\.5\.1 /, 'DATA before MAIL');
    assert.equal(say('MAIL FROM:<a@x.example>'), '250 2.1.0 Ok');
    assert.equal(say('DATA'), '503 5.5.1 Need RCPT command');
    const d = decide('BDAT 12 LAST');
    assert.equal(d.kind, 'bdat');
    assert.ok(d.kind === 'bdat' && !d.accept && d.reply?.code === 503);
    assert.ok(s.inTransaction, 'a refused DATA does not end the transaction');
  });

  it('DATA when every RCPT was refused is 554, not 503 (RFC 2920 §3.1)', () => {
    const s = session();
    const { say } = driver(s, { refuseRcpt: reply(550, '5.7.1', 'Relay access denied') });
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    assert.equal(say('RCPT TO:<b@y.example>'), '550 5.7.1 Relay access denied');
    assert.equal(say('RCPT TO:<c@y.example>'), '550 5.7.1 Relay access denied');
    assert.equal(say('DATA'), '554 5.5.1 No valid recipients');
  });

  it('a nested MAIL is 503 and keeps the first transaction', () => {
    const s = session();
    const { say, decide } = driver(s);
    say('EHLO client.example');
    say('MAIL FROM:<first@x.example>');
    say('RCPT TO:<b@y.example>');
    assert.equal(say('MAIL FROM:<second@x.example>'), '503 5.5.1 Nested MAIL command');
    const d = decide('DATA');
    assert.equal(d.kind, 'start-data');
    assert.ok(d.kind === 'start-data');
    assert.equal(wire(d.reply), '354 End data with <CR><LF>.<CR><LF>');
    assert.equal(d.envelope.sender?.address, 'first@x.example');
    assert.deepEqual(d.envelope.recipients.map((r) => r.mailbox.address), ['b@y.example']);
    assert.equal(d.envelope.body, '7BIT');
  });

  it('after DATA started, RCPT, DATA and BDAT are 503 until the message ends', () => {
    const s = session();
    const { say, decide } = driver(s);
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    say('RCPT TO:<b@y.example>');
    assert.equal(kindOf(decide('DATA')), 'start-data');
    assert.match(say('RCPT TO:<c@y.example>'), /^503 /);
    assert.match(say('DATA'), /^503 /);
    const b = decide('BDAT 4');
    assert.ok(b.kind === 'bdat' && !b.accept && b.size === 4 && b.reply?.code === 503);
  });

  it('RSET, EHLO and HELO each end the transaction', () => {
    for (const ender of ['RSET', 'EHLO again.example', 'HELO again.example']) {
      const s = session();
      const { say } = driver(s);
      say('EHLO client.example');
      say('MAIL FROM:<a@x.example>');
      say('RCPT TO:<b@y.example>');
      assert.ok(s.inTransaction);
      assert.equal(say(ender).slice(0, 3), '250', ender);
      assert.equal(s.inTransaction, false, `${ender} ends the transaction`);
      assert.match(say('RCPT TO:<c@y.example>'), /^503 /, `RCPT after ${ender}`);
      assert.equal(say('MAIL FROM:<a@x.example>'), '250 2.1.0 Ok', `a new MAIL after ${ender} is not nested`);
    }
  });

  it('a refused MAIL opens no transaction', () => {
    const s = session();
    const { say } = driver(s, { refuseMail: reply(550, '5.7.1', 'Sender refused') });
    say('EHLO client.example');
    assert.equal(say('MAIL FROM:<a@x.example>'), '550 5.7.1 Sender refused');
    assert.equal(s.inTransaction, false);
    assert.match(say('RCPT TO:<b@y.example>'), /^503 /);
  });
});

describe('ServerSession: EHLO and HELO', () => {
  it('EHLO lists SIZE <limit> and every extension Postwire offers', () => {
    const { decide } = driver(session({ maxMessageSize: 52_428_800 }));
    const d = decide('EHLO client.example');
    assert.equal(d.kind, 'reply');
    assert.ok(d.kind === 'reply');
    assert.equal(d.reply.code, 250);
    assert.equal(d.reply.lines[0], 'mx.postwire.test');
    const keywords = d.reply.lines.slice(1);
    for (const ext of ['SIZE 52428800', 'PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'BINARYMIME', 'DSN']) {
      assert.ok(keywords.includes(ext), `EHLO lists ${ext}: ${JSON.stringify(keywords)}`);
    }
    assert.ok(!keywords.includes('STARTTLS'), 'STARTTLS is not offered');
    assert.ok(!keywords.some((k) => k.startsWith('AUTH')), 'AUTH is not offered');
    // Multi-line on the wire: 250-… continuation lines, 250 SP on the last, no enhanced code.
    const lines = formatReply(d.reply).split('\r\n').filter(Boolean);
    assert.equal(lines[0], '250-mx.postwire.test');
    assert.ok(lines.slice(0, -1).every((l) => l.startsWith('250-')));
    assert.match(lines.at(-1) ?? '', /^250 [A-Z0-9]/);
  });

  it('HELO answers with a single line and no extensions', () => {
    const { say } = driver(session());
    assert.equal(say('HELO client.example'), '250 mx.postwire.test');
  });

  it('HELO then MAIL with parameters is 555; without them it is fine', () => {
    const { say } = driver(session());
    say('HELO client.example');
    assert.equal(say('MAIL FROM:<a@x.example> BODY=8BITMIME'), '555 5.5.4 MAIL parameters need EHLO');
    assert.equal(say('MAIL FROM:<a@x.example> SIZE=10'), '555 5.5.4 MAIL parameters need EHLO');
    assert.equal(say('MAIL FROM:<a@x.example>'), '250 2.1.0 Ok');
    assert.equal(say('RCPT TO:<b@y.example> NOTIFY=NEVER'), '555 5.5.4 RCPT parameters need EHLO');
  });

  it('BDAT needs EHLO', () => {
    const { say, decide } = driver(session());
    say('HELO client.example');
    say('MAIL FROM:<a@x.example>');
    say('RCPT TO:<b@y.example>');
    const d = decide('BDAT 7 LAST');
    assert.ok(d.kind === 'bdat' && !d.accept && d.size === 7);
    assert.ok(d.kind === 'bdat' && d.reply && d.reply.code === 503);
  });

  it('the HELO name is remembered for Received:', () => {
    const s = session();
    assert.equal(s.heloName, '');
    driver(s).say('EHLO [192.0.2.7]');
    assert.equal(s.heloName, '[192.0.2.7]');
  });
});

describe('ServerSession: limits and parameters', () => {
  it('MAIL SIZE over the limit is 552 5.3.4; at the limit it goes to policy', () => {
    const { decide, say } = driver(session({ maxMessageSize: 10_000 }));
    say('EHLO client.example');
    assert.equal(say('MAIL FROM:<a@x.example> SIZE=10001'), '552 5.3.4 Message size exceeds fixed maximum message size');
    const d = decide('MAIL FROM:<a@x.example> SIZE=10000');
    assert.equal(d.kind, 'check-mail');
    assert.ok(d.kind === 'check-mail' && d.params.size === 10_000);
  });

  it('recipients beyond maxRecipients get 452 4.5.3, which is not counted as an error', () => {
    const s = session({ maxRecipients: 2, maxBadCommands: 1 });
    const { say, decide } = driver(s);
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    assert.equal(say('RCPT TO:<r1@y.example>'), '250 2.1.5 Ok');
    assert.equal(say('RCPT TO:<r2@y.example>'), '250 2.1.5 Ok');
    for (let i = 3; i < 10; i++) assert.equal(say(`RCPT TO:<r${i}@y.example>`), '452 4.5.3 Too many recipients', `RCPT ${i}`);
    assert.equal(s.exhausted, false, 'seven 452s spent none of a budget of one');
    const d = decide('DATA');
    assert.ok(d.kind === 'start-data');
    assert.deepEqual(d.envelope.recipients.map((r) => r.mailbox.address), ['r1@y.example', 'r2@y.example']);
  });

  it('a UTF-8 sender without SMTPUTF8 is 553 5.6.7; with it, accepted', () => {
    const { say } = driver(session());
    say('EHLO client.example');
    assert.match(say('MAIL FROM:<jösé@x.example>'), /^553 5\.6\.7 /);
    assert.equal(say('MAIL FROM:<jösé@x.example> SMTPUTF8'), '250 2.1.0 Ok');
  });

  it('a UTF-8 recipient needs SMTPUTF8 on MAIL', () => {
    const { say } = driver(session());
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    assert.match(say('RCPT TO:<b@bücher.example>'), /^553 5\.6\.7 /);
    say('RSET');
    say('MAIL FROM:<a@x.example> SMTPUTF8');
    assert.equal(say('RCPT TO:<b@bücher.example>'), '250 2.1.5 Ok');
  });

  it('BODY=BINARYMIME then DATA is 503: binary needs BDAT', () => {
    const s = session();
    const { say, decide } = driver(s);
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example> BODY=BINARYMIME');
    say('RCPT TO:<b@y.example>');
    assert.equal(say('DATA'), '503 5.5.1 BODY=BINARYMIME needs BDAT, not DATA');
    const d = decide('BDAT 3 LAST');
    assert.ok(d.kind === 'bdat' && d.accept && d.open && d.envelope?.body === 'BINARYMIME');
  });

  it('the envelope carries the MAIL and RCPT parameters', () => {
    const { say, decide } = driver(session());
    say('EHLO client.example');
    say('MAIL FROM:<> BODY=8BITMIME RET=HDRS ENVID=abc');
    say('RCPT TO:<b@y.example> NOTIFY=FAILURE,DELAY');
    const d = decide('DATA');
    assert.ok(d.kind === 'start-data');
    assert.equal(d.envelope.sender, null);
    assert.equal(d.envelope.body, '8BITMIME');
    assert.equal(d.envelope.params.ret, 'HDRS');
    assert.equal(d.envelope.params.envid, 'abc');
    assert.deepEqual(d.envelope.recipients[0]?.params.notify, ['FAILURE', 'DELAY']);
  });
});

describe('ServerSession: BDAT', () => {
  function inEnvelope(s: ServerSession): ReturnType<typeof driver> {
    const d = driver(s);
    d.say('EHLO client.example');
    d.say('MAIL FROM:<a@x.example>');
    d.say('RCPT TO:<b@y.example>');
    return d;
  }

  it('the first chunk opens the message, later ones do not', () => {
    const s = session();
    const { say } = inEnvelope(s);
    assert.equal(say('BDAT 100'), 'bdat accept size=100 last=false open=true');
    assert.equal(wire(s.chunkStored(100)), '250 2.0.0 100 octets received');
    assert.equal(say('BDAT 5 LAST'), 'bdat accept size=5 last=true open=false');
    assert.equal(wire(s.messageQueued('Q1')), '250 2.0.0 Ok: queued as Q1');
    assert.equal(s.inTransaction, false);
  });

  it('a refused BDAT still reports its size, so the connection consumes the chunk', () => {
    const { say, decide } = driver(session());
    say('EHLO client.example');
    for (const [line, size, last] of [
      ['BDAT 4096', 4096, false],
      ['BDAT 0 LAST', 0, true],
      ['BDAT 12345 LAST', 12345, true],
    ] as const) {
      const d = decide(line);
      assert.equal(d.kind, 'bdat', line);
      assert.ok(d.kind === 'bdat');
      assert.equal(d.accept, false, line);
      assert.equal(d.size, size, line);
      assert.equal(d.last, last, line);
      assert.equal(d.reply?.code, 503, line);
    }
  });

  it('after a failed chunk every later chunk is refused until LAST', () => {
    const s = session();
    const { say, decide } = inEnvelope(s);
    assert.equal(kindOf(decide('BDAT 10')), 'bdat');
    assert.equal(wire(s.chunkFailed(reply(451, '4.3.0', 'Queue write error'), false)), '451 4.3.0 Queue write error');
    const next = decide('BDAT 20');
    assert.ok(next.kind === 'bdat' && !next.accept && next.size === 20 && next.reply?.code === 503, JSON.stringify(next));
    assert.ok(s.inTransaction, 'still in the (failed) transaction');
    const last = decide('BDAT 30 LAST');
    assert.ok(last.kind === 'bdat' && !last.accept && last.size === 30 && last.reply?.code === 503);
    assert.equal(s.inTransaction, false, 'LAST ends the failed transaction');
    assert.equal(say('MAIL FROM:<a@x.example>'), '250 2.1.0 Ok', 'a new transaction can start');
  });

  it('after a failed chunk RSET ends the transaction and a new message can be sent', () => {
    const s = session();
    const { say } = inEnvelope(s);
    say('BDAT 10');
    s.chunkFailed(reply(552, '5.3.4', 'Message size exceeds fixed maximum message size'), false);
    assert.equal(say('RSET'), '250 2.0.0 Ok');
    say('MAIL FROM:<a@x.example>');
    say('RCPT TO:<b@y.example>');
    assert.equal(say('BDAT 1 LAST'), 'bdat accept size=1 last=true open=true');
  });

  it('a failed LAST chunk ends the transaction', () => {
    const s = session();
    const { say } = inEnvelope(s);
    say('BDAT 10 LAST');
    assert.equal(s.chunkFailed(reply(451, '4.3.0', 'Queue write error'), true).code, 451);
    assert.equal(s.inTransaction, false);
    assert.match(say('BDAT 1 LAST'), /^503 /);
  });

  it('DATA after BDAT is 503', () => {
    const s = session();
    const { say } = inEnvelope(s);
    say('BDAT 10');
    s.chunkStored(10);
    assert.equal(say('DATA'), '503 5.5.1 DATA is not allowed after BDAT');
  });

  it('BDAT when every RCPT was refused is 554', () => {
    const s = session();
    const { say, decide } = driver(s, { refuseRcpt: reply(550, '5.7.1', 'Relay access denied') });
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    say('RCPT TO:<b@y.example>');
    const d = decide('BDAT 9 LAST');
    assert.ok(d.kind === 'bdat' && !d.accept && d.size === 9 && d.reply?.code === 554);
  });
});

describe('ServerSession: error budget', () => {
  it('after maxBadCommands counted errors the next one is 421 with close', () => {
    const s = session({ maxBadCommands: 3 });
    const { decide } = driver(s);
    for (let i = 1; i <= 3; i++) {
      const d = decide('FROBNICATE');
      assert.ok(d.kind === 'reply' && d.reply.code === 500 && !d.close, `error ${i}: ${JSON.stringify(d)}`);
    }
    assert.equal(s.exhausted, false);
    const d = decide('FROBNICATE');
    assert.ok(d.kind === 'reply');
    assert.equal(d.reply.code, 421);
    assert.equal(d.reply.enhanced, '4.7.0');
    assert.equal(d.close, true);
    assert.equal(s.exhausted, true);
  });

  it('counts syntax errors, sequence errors, line errors and policy refusals, not 2xx/4xx', () => {
    const s = session({ maxBadCommands: 4 });
    const { say } = driver(s, { refuseRcpt: reply(550, '5.7.1', 'Relay access denied') });
    assert.match(say('NOOP'), /^250 /);
    assert.match(say('VRFY bob'), /^252 /);
    assert.match(say('HELP'), /^214-/);
    assert.match(say('MAIL FROM:<a@x.example>'), /^503 /); // 1
    assert.match(say('EHLO'), /^501 /); // 2
    assert.match(wire(expectReply(s.lineError('LINE_TOO_LONG'))), /^500 5\.5\.2 /); // 3
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    assert.match(say('RCPT TO:<b@y.example>'), /^550 /); // 4
    assert.equal(s.exhausted, false);
    assert.match(say('RCPT TO:<c@y.example>'), /^421 4\.7\.0 /, 'the fifth counted error, a policy refusal, is 421');
    assert.equal(s.exhausted, true);
  });

  it('a refused BDAT counts against the budget too', () => {
    const s = session({ maxBadCommands: 2 });
    const { say, decide } = driver(s);
    say('EHLO client.example');
    decide('BDAT 1');
    decide('BDAT 1');
    assert.equal(s.exhausted, false);
    decide('BDAT 1');
    assert.equal(s.exhausted, true, 'three refused BDATs exhaust a budget of two');
  });

  it('a refused BDAT over the budget answers 421 like every other command', () => {
      const s = session({ maxBadCommands: 2 });
      const { say, decide } = driver(s);
      say('EHLO client.example');
      decide('BDAT 1');
      decide('BDAT 1');
      const d = decide('BDAT 1');
      assert.ok(d.kind === 'bdat' && !d.accept && d.size === 1);
      assert.equal(d.reply?.code, 421, 'the chunk is consumed, then 421 and close');
    },
  );
});

describe('ServerSession: message outcome and protocol name', () => {
  it('messageQueued says 250 2.0.0 Ok: queued as <id> and ends the transaction', () => {
    const s = session();
    const { say, decide } = driver(s);
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    say('RCPT TO:<b@y.example>');
    assert.equal(kindOf(decide('DATA')), 'start-data');
    assert.equal(formatReply(s.messageQueued('01HZX3K9')), '250 2.0.0 Ok: queued as 01HZX3K9\r\n');
    assert.equal(s.inTransaction, false);
    assert.equal(say('MAIL FROM:<a@x.example>'), '250 2.1.0 Ok', 'the next transaction starts cleanly');
  });

  it('messageFailed passes the failure through and ends the transaction', () => {
    const s = session();
    const { say, decide } = driver(s);
    say('EHLO client.example');
    say('MAIL FROM:<a@x.example>');
    say('RCPT TO:<b@y.example>');
    decide('DATA');
    assert.equal(wire(s.messageFailed(reply(451, '4.3.0', 'Queue write error'))), '451 4.3.0 Queue write error');
    assert.equal(s.inTransaction, false);
  });

  it('protocolName is SMTP after HELO, ESMTP after EHLO, UTF8SMTP with SMTPUTF8', () => {
    const s = session();
    const { say } = driver(s);
    assert.equal(s.protocolName, 'SMTP');
    say('HELO client.example');
    say('MAIL FROM:<a@x.example>');
    assert.equal(s.protocolName, 'SMTP');
    say('EHLO client.example');
    assert.equal(s.protocolName, 'ESMTP');
    say('MAIL FROM:<a@x.example>');
    assert.equal(s.protocolName, 'ESMTP', 'ESMTP without SMTPUTF8');
    say('RSET');
    say('MAIL FROM:<jösé@x.example> SMTPUTF8');
    assert.equal(s.protocolName, 'UTF8SMTP');
    say('HELO client.example');
    assert.equal(s.protocolName, 'SMTP', 'HELO again drops back to SMTP');
  });

  it('QUIT says 221 and closes', () => {
    const { decide } = driver(session());
    const d = decide('QUIT');
    assert.ok(d.kind === 'reply' && d.close === true);
    assert.equal(wire(d.reply), '221 2.0.0 Bye');
  });
});

function expectReply(d: Decision): Reply {
  assert.equal(d.kind, 'reply');
  assert.ok(d.kind === 'reply');
  return d.reply;
}

describe('ServerSession: property', () => {
  // Fragments that assemble into every verb, broken and whole, with parameters and addresses.
  const fragment = fc.constantFrom(
    'EHLO ', 'HELO ', 'MAIL FROM:', 'RCPT TO:', 'DATA', 'BDAT ', 'RSET', 'NOOP', 'QUIT', 'VRFY ', 'EXPN ', 'HELP',
    'STARTTLS', 'AUTH PLAIN ', '<a@x.example>', '<>', '<jösé@x.example>', '<b@bücher.example>', ' SIZE=', ' SIZE=99999999',
    ' BODY=BINARYMIME', ' BODY=8BITMIME', ' SMTPUTF8', ' NOTIFY=NEVER', ' RET=FULL', '0', '7', '100', ' LAST', 'client.example',
    ' ', '<', '>', '@', '"', '=', ':', 'x',
  );
  const commandLine = fc.oneof(
    { weight: 5, arbitrary: fc.array(fragment, { minLength: 1, maxLength: 5 }).map((parts) => parts.join('')) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40, unit: 'binary' }) },
  );
  const step = fc.record({ line: commandLine, accept: fc.boolean(), outcome: fc.nat(3) });

  it('random command lines never throw and every reply code is 2xx–5xx', () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 40 }),
        fc.record({ maxRecipients: fc.integer({ min: 1, max: 4 }), maxBadCommands: fc.integer({ min: 0, max: 6 }) }),
        (steps, limits) => {
          const s = session(limits);
          const replies: Reply[] = [];
          for (const { line, accept, outcome } of steps) {
            const d = s.receive(parseCommand(line));
            let closed = false;
            switch (d.kind) {
              case 'reply':
                replies.push(d.reply);
                if (d.reply.code === 421) assert.equal(d.close, true, `421 closes: ${line}`);
                closed = d.close === true;
                break;
              case 'check-mail':
                replies.push(accept ? s.mailAccepted(d.from, d.params) : s.mailRefused(reply(550, '5.7.1', 'no')));
                break;
              case 'check-rcpt':
                replies.push(accept ? s.rcptAccepted(d.to, d.params) : s.rcptRefused(reply(550, '5.7.1', 'no')));
                break;
              case 'start-data':
                assert.equal(d.reply.code, 354);
                assert.ok(d.envelope.recipients.length > 0 && d.envelope.recipients.length <= limits.maxRecipients);
                replies.push(d.reply);
                replies.push(outcome === 0 ? s.messageFailed(reply(451, '4.3.0', 'x')) : s.messageQueued(`Q${replies.length}`));
                break;
              case 'bdat':
                assert.ok(Number.isSafeInteger(d.size) && d.size >= 0);
                if (!d.accept) {
                  assert.ok(d.reply, 'a refused chunk carries its reply');
                  replies.push(d.reply);
                } else if (outcome === 0) {
                  replies.push(s.chunkFailed(reply(451, '4.3.0', 'x'), d.last));
                } else {
                  replies.push(d.last ? s.messageQueued(`Q${replies.length}`) : s.chunkStored(d.size));
                }
                break;
            }
            const last = replies.at(-1);
            if (last?.code === 421) closed = true;
            if (closed) break;
          }
          for (const r of replies) {
            assert.ok(Number.isInteger(r.code) && r.code >= 200 && r.code <= 599, `code ${r.code}`);
            assert.ok(r.lines.length > 0);
            assert.doesNotMatch(formatReply(r), /\r\n(?!\d{3}[ -]|$)/, 'every line starts with a code');
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('ServerSession: STARTTLS (RFC 3207)', () => {
  const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
  const ehloKeywords = (s: ServerSession): string[] => {
    const d = s.receive(parseCommand('EHLO client.test'));
    assert.equal(d.kind, 'reply');
    return d.kind === 'reply' ? d.reply.lines.slice(1) : [];
  };

  it('is offered only before TLS, and the handshake makes the client start again', () => {
    const s = session({ starttls: true });
    assert.ok(ehloKeywords(s).includes('STARTTLS'));
    assert.ok(!ehloKeywords(s).includes('REQUIRETLS'), 'REQUIRETLS only over TLS');
    const { say } = driver(s);
    assert.equal(say('MAIL FROM:<a@x.example>'), '250 2.1.0 Ok');
    assert.equal(say('STARTTLS'), '503 5.5.1 STARTTLS is not allowed during a mail transaction');
    assert.equal(say('RSET'), '250 2.0.0 Ok');
    assert.equal(say('STARTTLS'), '220 2.0.0 Ready to start TLS [start-tls]');
    s.tlsStarted();
    assert.equal(say('MAIL FROM:<a@x.example>'), '503 5.5.1 Send HELO or EHLO first', 'EHLO is forgotten (§4.2)');
    const after = ehloKeywords(s);
    assert.ok(!after.includes('STARTTLS'));
    assert.ok(after.includes('REQUIRETLS'));
    assert.equal(say('STARTTLS'), '503 5.5.1 TLS is already active');
    assert.equal(s.protocolName, 'ESMTPS');
  });

  it('is 502 without a certificate', () => {
    assert.equal(driver(session()).say('STARTTLS'), '502 5.5.1 STARTTLS is not available');
  });

  it('REQUIRETLS on MAIL FROM is refused in plain text and accepted over TLS', () => {
    const plain = session({ starttls: true });
    ehloKeywords(plain);
    assert.equal(driver(plain).say('MAIL FROM:<a@x.example> REQUIRETLS'), '530 5.7.10 REQUIRETLS needs a TLS session: issue STARTTLS first');
    const tls = session({ implicitTls: true });
    ehloKeywords(tls);
    const d = tls.receive(parseCommand('MAIL FROM:<a@x.example> REQUIRETLS'));
    assert.equal(d.kind, 'check-mail');
    assert.equal(d.kind === 'check-mail' ? d.params.requireTls : undefined, true);
  });

  it('AUTH is refused before TLS (538 5.7.11), offered after, and only once', () => {
    const s = session({ starttls: true, auth: true });
    assert.ok(!ehloKeywords(s).some((k) => k.startsWith('AUTH')), 'not advertised in plain text');
    const { say } = driver(s);
    assert.equal(say(`AUTH PLAIN ${b64('\0alice\0secret')}`), '538 5.7.11 Encryption required for requested authentication mechanism');
    s.tlsStarted();
    assert.ok(ehloKeywords(s).includes('AUTH PLAIN LOGIN'));
    assert.equal(say(`AUTH PLAIN ${b64('\0alice\0secret')}`), 'check-auth PLAIN ["","alice","secret"]');
    assert.equal(wire(s.authSucceeded('alice')), '235 2.7.0 Authentication successful');
    assert.equal(s.protocolName, 'ESMTPSA');
    assert.equal(say(`AUTH PLAIN ${b64('\0alice\0secret')}`), '503 5.5.1 Already authenticated');
    assert.ok(!ehloKeywords(s).some((k) => k.startsWith('AUTH')), 'not advertised once authenticated');
  });

  it('loopback plain-text AUTH when allowed; ESMTPA without TLS', () => {
    const s = session({ auth: true, authWithoutTls: true });
    assert.ok(ehloKeywords(s).includes('AUTH PLAIN LOGIN'));
    assert.equal(driver(s).say(`AUTH PLAIN ${b64('\0alice\0pw')}`), 'check-auth PLAIN ["","alice","pw"]');
    s.authSucceeded('alice');
    assert.equal(s.protocolName, 'ESMTPA');
  });

  it('the PLAIN and LOGIN exchanges, cancel, bad base64, and AUTH inside a transaction', () => {
    const s = session({ implicitTls: true, auth: true, maxBadCommands: 50 });
    ehloKeywords(s);
    const { say } = driver(s);
    assert.equal(say('AUTH PLAIN'), '334 ');
    assert.equal(formatReply(reply(334, undefined, '')), '334 \r\n', 'the empty challenge keeps its space');
    assert.ok(s.inAuthExchange);
    const plain = s.authResponse(b64('alice\0alice\0pw'));
    assert.deepEqual(plain.kind === 'check-auth' ? plain.credentials : undefined, { mechanism: 'PLAIN', authzid: 'alice', username: 'alice', password: 'pw' });
    assert.equal(wire(s.authFailed(reply(535, '5.7.8', 'Authentication credentials invalid'))), '535 5.7.8 Authentication credentials invalid');
    assert.equal(say('AUTH LOGIN'), `334 ${b64('Username:')}`);
    const pw = s.authResponse(b64('bob'));
    assert.equal(pw.kind === 'reply' ? wire(pw.reply) : pw.kind, `334 ${b64('Password:')}`);
    const login = s.authResponse(b64('hunter2'));
    assert.deepEqual(login.kind === 'check-auth' ? login.credentials : undefined, { mechanism: 'LOGIN', authzid: '', username: 'bob', password: 'hunter2' });
    assert.equal(say(`AUTH LOGIN ${b64('carol')}`), `334 ${b64('Password:')}`, 'LOGIN initial response is the user name');
    const cancel = s.authResponse('*');
    assert.equal(cancel.kind === 'reply' ? wire(cancel.reply) : cancel.kind, '501 5.7.0 Authentication cancelled');
    assert.ok(!s.inAuthExchange);
    assert.equal(say('AUTH PLAIN'), '334 ');
    const bad = s.authResponse('not base64!');
    assert.equal(bad.kind === 'reply' ? wire(bad.reply) : bad.kind, '501 5.5.2 Cannot decode the response: not base64');
    assert.equal(say('AUTH PLAIN !!!'), '501 5.5.2 AUTH initial response must be base64 or =');
    assert.equal(say(`AUTH PLAIN ${b64('no-nuls')}`), '501 5.5.2 PLAIN response must be [authzid] NUL authcid NUL passwd');
    assert.equal(say('AUTH CRAM-MD5'), '504 5.5.4 Unrecognized authentication type');
    assert.equal(say('MAIL FROM:<a@x.example>'), '250 2.1.0 Ok');
    assert.equal(say(`AUTH PLAIN ${b64('\0a\0b')}`), '503 5.5.1 AUTH is not allowed during a mail transaction');
  });

  it('AUTH needs EHLO, and is 502 without a user file', () => {
    const s = session({ implicitTls: true, auth: true });
    assert.equal(driver(s).say('HELO client.test'), '250 mx.postwire.test');
    assert.equal(driver(s).say('AUTH PLAIN'), '503 5.5.1 Send EHLO first');
    const none = session({ implicitTls: true });
    ehloKeywords(none);
    assert.equal(driver(none).say('AUTH PLAIN'), '502 5.5.1 AUTH is not available');
  });

  it('UTF8SMTP forms of the protocol name', () => {
    const s = session({ implicitTls: true, auth: true });
    ehloKeywords(s);
    s.authSucceeded('alice');
    assert.equal(driver(s).say('MAIL FROM:<a@x.example> SMTPUTF8'), '250 2.1.0 Ok');
    assert.equal(s.protocolName, 'UTF8SMTPSA');
  });
});
