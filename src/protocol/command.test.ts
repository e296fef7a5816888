import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { formatCommand, parseCommand } from './command.js';
import { ProtocolError } from './reply.js';
import type { Command } from './types.js';

function ok(line: string | Uint8Array): Command {
  const r = parseCommand(line);
  assert.ok(r.ok, `${String(line)}: ${r.ok ? '' : JSON.stringify(r.reply)}`);
  return r.command;
}

function refusal(line: string | Uint8Array): string {
  const r = parseCommand(line);
  assert.ok(!r.ok, `${String(line)} should be refused`);
  return `${r.reply.code} ${r.reply.enhanced ?? ''}${r.verb ? ` ${r.verb}` : ''}`;
}

test('verbs are case-insensitive; simple verbs', () => {
  assert.deepEqual(ok('ehlo client.example'), { verb: 'EHLO', domain: 'client.example' });
  assert.deepEqual(ok('HELO [192.0.2.1]'), { verb: 'HELO', domain: '[192.0.2.1]' });
  for (const v of ['DATA', 'rset', 'Quit', 'STARTTLS', 'NOOP']) assert.deepEqual(ok(v), { verb: v.toUpperCase() });
  assert.deepEqual(ok('NOOP hello there'), { verb: 'NOOP' });
  assert.deepEqual(ok('HELP'), { verb: 'HELP', argument: '' });
  assert.deepEqual(ok('HELP mail'), { verb: 'HELP', argument: 'mail' });
  assert.deepEqual(ok('VRFY bob'), { verb: 'VRFY', argument: 'bob' });
  assert.deepEqual(ok('EXPN list'), { verb: 'EXPN', argument: 'list' });
  assert.deepEqual(ok('QUIT '), { verb: 'QUIT' });
});

test('argument errors carry the verb', () => {
  assert.equal(refusal('EHLO'), '501 5.5.4 EHLO');
  assert.equal(refusal('HELO a b'), '501 5.5.4 HELO');
  assert.equal(refusal('DATA x'), '501 5.5.4 DATA');
  assert.equal(refusal('RSET now'), '501 5.5.4 RSET');
  assert.equal(refusal('QUIT please'), '501 5.5.4 QUIT');
  assert.equal(refusal('STARTTLS x'), '501 5.5.4 STARTTLS');
  assert.equal(refusal('VRFY'), '501 5.5.4 VRFY');
  assert.equal(refusal('MAIL TO:<a@b>'), '501 5.5.4 MAIL');
  assert.equal(refusal('RCPT FROM:<a@b>'), '501 5.5.4 RCPT');
});

test('unknown verbs, empty lines, bad bytes', () => {
  assert.equal(refusal('FOO bar'), '500 5.5.1');
  assert.equal(refusal('MAILFROM:<a@b>'), '500 5.5.1');
  assert.equal(refusal(''), '500 5.5.1');
  assert.equal(refusal(Buffer.from([0x45, 0x48, 0x4c, 0x4f, 0x20, 0xff])), '500 5.5.2');
  assert.equal(refusal('EHLO a\x01'), '500 5.5.2');
  assert.deepEqual(ok(Buffer.from('EHLO bücher.example')), { verb: 'EHLO', domain: 'bücher.example' });
});

test('MAIL FROM: paths, spaces after the colon, parameters', () => {
  assert.deepEqual(ok('MAIL FROM:<>'), { verb: 'MAIL', from: null, params: {} });
  assert.deepEqual(ok('mail from: <a@b.example> size=12 BODY=8BITMIME'), {
    verb: 'MAIL',
    from: { localPart: 'a', domain: 'b.example', utf8: false, address: 'a@b.example' },
    params: { size: 12, body: '8BITMIME' },
  });
  const quoted = ok('MAIL FROM:<"a> b"@x> SMTPUTF8');
  assert.ok(quoted.verb === 'MAIL' && quoted.from?.localPart === 'a> b' && quoted.params.smtputf8 === true);
  assert.equal(refusal('MAIL FROM:a@b'), '501 5.1.7 MAIL');
  assert.equal(refusal('MAIL FROM:<a@b'), '501 5.1.7 MAIL');
  assert.equal(refusal('MAIL FROM:<a@@b>'), '501 5.1.7 MAIL');
  assert.equal(refusal('MAIL FROM:<a@b>SIZE=1'), '501 5.1.7 MAIL');
  assert.equal(refusal('MAIL FROM:<a@b> FOO=1'), '555 5.5.4 MAIL');
  assert.equal(refusal('MAIL FROM:<a@b> SIZE=x'), '501 5.5.4 MAIL');
  assert.equal(refusal('MAIL FROM:<a@b> SIZE=1 SIZE=2'), '501 5.5.4 MAIL');
});

test('RCPT TO: paths, Postmaster, parameters', () => {
  const pm = ok('RCPT TO:<postMASTER>');
  assert.ok(pm.verb === 'RCPT' && pm.postmaster && pm.to.domain === '');
  const pmd = ok('RCPT TO:<Postmaster@any.example>');
  assert.ok(pmd.verb === 'RCPT' && pmd.postmaster);
  const r = ok('RCPT TO: <@relay.example:c@d.example> NOTIFY=FAILURE');
  assert.ok(r.verb === 'RCPT' && !r.postmaster && r.to.address === 'c@d.example');
  assert.deepEqual(r.verb === 'RCPT' && r.params, { notify: ['FAILURE'] });
  assert.equal(refusal('RCPT TO:<>'), '501 5.1.3 RCPT');
  assert.equal(refusal('RCPT TO:c@d'), '501 5.1.3 RCPT');
  assert.equal(refusal('RCPT TO:<c@d> SIZE=1'), '555 5.5.4 RCPT');
});

test('BDAT sizes', () => {
  assert.deepEqual(ok('BDAT 0'), { verb: 'BDAT', size: 0, last: false });
  assert.deepEqual(ok('bdat 123 last'), { verb: 'BDAT', size: 123, last: true });
  assert.deepEqual(ok(`BDAT ${Number.MAX_SAFE_INTEGER} LAST`), { verb: 'BDAT', size: Number.MAX_SAFE_INTEGER, last: true });
  for (const bad of ['BDAT', 'BDAT x', 'BDAT -1', 'BDAT 1.5', 'BDAT 1 LAST x', 'BDAT 1 FIRST', `BDAT ${Number.MAX_SAFE_INTEGER + 1}`, 'BDAT 12LAST']) {
    assert.equal(refusal(bad), '501 5.5.4 BDAT', bad);
  }
});

test('AUTH', () => {
  assert.deepEqual(ok('AUTH plain'), { verb: 'AUTH', mechanism: 'PLAIN' });
  assert.deepEqual(ok('AUTH PLAIN AGJvYgBzZWNyZXQ='), { verb: 'AUTH', mechanism: 'PLAIN', initialResponse: 'AGJvYgBzZWNyZXQ=' });
  assert.deepEqual(ok('AUTH EXTERNAL ='), { verb: 'AUTH', mechanism: 'EXTERNAL', initialResponse: '=' });
  for (const bad of ['AUTH', 'AUTH PLAIN a b', 'AUTH PL*IN']) assert.equal(refusal(bad), '501 5.5.4 AUTH', bad);
  assert.equal(refusal('AUTH PLAIN a$b'), '501 5.5.2 AUTH', 'not base64: RFC 4954 §4');
});

test('formatCommand renders the wire form', () => {
  const mail = ok('MAIL FROM:<a@b> SIZE=12 BODY=8BITMIME');
  assert.equal(formatCommand(mail), 'MAIL FROM:<a@b> BODY=8BITMIME SIZE=12\r\n');
  assert.equal(formatCommand({ verb: 'MAIL', from: null, params: { envid: 'x y' } }), 'MAIL FROM:<> ENVID=x+20y\r\n');
  assert.equal(formatCommand(ok('RCPT TO:<Postmaster>')), 'RCPT TO:<Postmaster>\r\n');
  assert.equal(formatCommand(ok('rcpt to:<"a b"@c> notify=never')), 'RCPT TO:<"a b"@c> NOTIFY=NEVER\r\n');
  assert.equal(formatCommand({ verb: 'BDAT', size: 5, last: true }), 'BDAT 5 LAST\r\n');
  assert.equal(formatCommand({ verb: 'EHLO', domain: 'me.example' }), 'EHLO me.example\r\n');
  assert.equal(formatCommand({ verb: 'HELP', argument: '' }), 'HELP\r\n');
  assert.equal(formatCommand({ verb: 'AUTH', mechanism: 'PLAIN', initialResponse: '=' }), 'AUTH PLAIN =\r\n');
  assert.equal(formatCommand({ verb: 'QUIT' }), 'QUIT\r\n');
});

test('formatCommand refuses to inject lines', () => {
  assert.throws(
    () => formatCommand({ verb: 'EHLO', domain: 'x\r\nRCPT TO:<evil@x>' }),
    (e: unknown) => e instanceof ProtocolError && e.code === 'BAD_COMMAND',
  );
  const evil = { localPart: 'a', domain: 'b\nDATA', utf8: false, address: 'a@b\nDATA' };
  assert.throws(() => formatCommand({ verb: 'RCPT', to: evil, params: {}, postmaster: false }), ProtocolError);
});

test('parse(format(parse(line))) is stable, and parsing never throws (property)', () => {
  const words = fc.constantFrom('MAIL FROM:', 'RCPT TO:', 'EHLO', 'BDAT', 'AUTH', 'NOOP', '<', '>', '@', ' ', '"', '\\', 'a', '.', 'SIZE=', 'NOTIFY=', 'LAST', '1', 'x.example', 'ü');
  fc.assert(
    fc.property(fc.array(words, { maxLength: 12 }), (parts) => {
      const r = parseCommand(parts.join(''));
      if (!r.ok) return;
      const again = parseCommand(formatCommand(r.command).slice(0, -2));
      assert.ok(again.ok);
      assert.deepEqual(again.command, r.command);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (line) => void parseCommand(line)),
    { numRuns: 1000 },
  );
});
