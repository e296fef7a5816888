import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeUtf8AddrXtext,
  decodeXtext,
  encodeUtf8AddrXtext,
  encodeXtext,
  formatMailParams,
  formatRcptParams,
  parseMailParams,
  parseRcptParams,
} from './params.js';

function mailOk(text: string) {
  const r = parseMailParams(text);
  assert.ok(r.ok, `${text}: ${r.ok ? '' : r.reply.lines.join()}`);
  return r.params;
}

function refused(r: ReturnType<typeof parseMailParams> | ReturnType<typeof parseRcptParams>): string {
  assert.ok(!r.ok);
  return `${r.reply.code} ${r.reply.enhanced ?? ''}`;
}

test('MAIL parameters parse case-insensitively', () => {
  assert.deepEqual(mailOk(''), {});
  assert.deepEqual(mailOk('size=1000 body=8bitmime SMTPUTF8 ret=hdrs ENVID=QQ+2BZ AUTH=<>'), {
    size: 1000,
    body: '8BITMIME',
    smtputf8: true,
    ret: 'HDRS',
    envid: 'QQ+Z',
    auth: '<>',
  });
  assert.deepEqual(mailOk('BODY=BINARYMIME  AUTH=e+3Dmc2@example.com'), { body: 'BINARYMIME', auth: 'e=mc2@example.com' });
  assert.equal(mailOk(`SIZE=${Number.MAX_SAFE_INTEGER}`).size, Number.MAX_SAFE_INTEGER);
});

test('MAIL parameter errors: 555 unknown, 501 bad value or duplicate', () => {
  assert.equal(refused(parseMailParams('FOO=1')), '555 5.5.4');
  assert.equal(refused(parseMailParams('MT-PRIORITY=3')), '555 5.5.4');
  assert.equal(refused(parseMailParams('REQUIRETLS=yes')), '501 5.5.4');
  assert.deepEqual(mailOk('REQUIRETLS'), { requireTls: true });
  assert.equal(refused(parseMailParams('NOTIFY=NEVER')), '555 5.5.4');
  for (const bad of ['SIZE', 'SIZE=-1', 'SIZE=1e3', 'SIZE=99999999999999999999', 'BODY=9BIT', 'SMTPUTF8=yes', 'RET=ALL', 'ENVID=a+2', `ENVID=${'a'.repeat(101)}`, 'AUTH=', 'SIZE=1 size=2', '=x', 'SIZE=a=b']) {
    assert.equal(refused(parseMailParams(bad)), '501 5.5.4', bad);
  }
  assert.equal(refused(parseMailParams('__proto__=1')), '501 5.5.4');
  assert.equal(refused(parseMailParams('constructor')), '555 5.5.4');
});

test('RCPT parameters: NOTIFY and ORCPT (rfc822 xtext, utf-8 addr xtext)', () => {
  const r = parseRcptParams('NOTIFY=success,delay ORCPT=rfc822;a+2Bb@x.example');
  assert.ok(r.ok);
  assert.deepEqual(r.params, { notify: ['SUCCESS', 'DELAY'], orcpt: { addrType: 'rfc822', address: 'a+b@x.example' } });
  const n = parseRcptParams('notify=never');
  assert.ok(n.ok);
  assert.equal(n.params.notify, 'NEVER');
  const u = parseRcptParams('ORCPT=utf-8;j\\x{F6}ran@b\\x{FC}cher.example');
  assert.ok(u.ok);
  assert.deepEqual(u.params.orcpt, { addrType: 'utf-8', address: 'jöran@bücher.example' });
  const raw = parseRcptParams('ORCPT=UTF-8;jöran@x');
  assert.ok(raw.ok);
  assert.equal(raw.params.orcpt?.address, 'jöran@x');
  for (const bad of ['NOTIFY=NEVER,SUCCESS', 'NOTIFY=', 'NOTIFY=SOMETIMES', 'ORCPT=a@b', 'ORCPT=;a@b', 'ORCPT=rfc822;a+zz', 'ORCPT=utf-8;a\\x{D800}', 'ORCPT=rfc822;jö@x']) {
    assert.equal(refused(parseRcptParams(bad)), '501 5.5.4', bad);
  }
  assert.equal(refused(parseRcptParams('SIZE=1')), '555 5.5.4');
});

test('formatMailParams / formatRcptParams', () => {
  assert.equal(formatMailParams({ size: 12, body: '8BITMIME' }), 'BODY=8BITMIME SIZE=12');
  assert.equal(formatMailParams({ envid: 'a b+c', auth: '<>', smtputf8: true, ret: 'FULL' }), 'SMTPUTF8 RET=FULL ENVID=a+20b+2Bc AUTH=<>');
  assert.equal(formatMailParams({}), '');
  assert.equal(formatRcptParams({ notify: 'NEVER' }), 'NOTIFY=NEVER');
  assert.equal(formatRcptParams({ notify: ['FAILURE', 'DELAY'], orcpt: { addrType: 'rfc822', address: 'a=b@c' } }), 'NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+3Db@c');
  assert.equal(formatRcptParams({ orcpt: { addrType: 'utf-8', address: 'ö+=\\@x' } }), 'ORCPT=utf-8;\\x{F6}\\x{2B}\\x{3D}\\x{5C}@x');
});

test('xtext round trips for any string (property)', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (s) => {
      const wellFormed = Buffer.from(s, 'utf8').toString('utf8');
      const encoded = encodeXtext(wellFormed);
      assert.match(encoded, /^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$/);
      assert.equal(decodeXtext(encoded), wellFormed);
      const addr = encodeUtf8AddrXtext(wellFormed);
      assert.match(addr, /^[\x21-\x7e]*$/);
      assert.equal(decodeUtf8AddrXtext(addr), wellFormed);
    }),
    { numRuns: 500 },
  );
});

test('format then parse gives the same params (property)', () => {
  const mail = fc.record(
    {
      size: fc.nat(),
      body: fc.constantFrom('7BIT' as const, '8BITMIME' as const, 'BINARYMIME' as const),
      smtputf8: fc.constant(true as const),
      ret: fc.constantFrom('FULL' as const, 'HDRS' as const),
      envid: fc.string({ minLength: 1, maxLength: 30 }),
      auth: fc.string({ minLength: 1, maxLength: 30 }),
    },
    { requiredKeys: [] },
  );
  fc.assert(
    fc.property(mail, (p) => {
      const r = parseMailParams(formatMailParams(p));
      assert.ok(r.ok);
      assert.deepEqual(r.params, { ...p });
    }),
    { numRuns: 300 },
  );
});
