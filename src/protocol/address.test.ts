import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatPath, isIPv6, isValidAddressLiteral, isValidDomain, parseForwardPath, parseReversePath } from './address.js';

function ok(text: string) {
  const r = parseReversePath(text);
  assert.ok(r.ok, `${text} should parse: ${r.ok ? '' : r.reason}`);
  return r.path;
}

function bad(text: string): void {
  assert.equal(parseReversePath(text).ok, false, `${text} should be refused`);
}

test('null sender and plain mailboxes', () => {
  assert.equal(ok('<>'), null);
  assert.deepEqual(ok('<John.Doe@Example.COM>'), {
    localPart: 'John.Doe',
    domain: 'Example.COM',
    utf8: false,
    address: 'John.Doe@Example.COM',
  });
  assert.equal(ok("<!#$%&'*+-/=?^_`{|}~@x.y>")?.localPart, "!#$%&'*+-/=?^_`{|}~");
});

test('quoted local parts: unquoted value, re-quoted only when needed', () => {
  assert.deepEqual(ok('<"a b"@x>'), { localPart: 'a b', domain: 'x', utf8: false, address: '"a b"@x' });
  assert.equal(ok('<"abc"@x>')?.address, 'abc@x');
  assert.equal(ok('<"a\\"b\\\\c"@x>')?.address, '"a\\"b\\\\c"@x');
  assert.equal(ok('<"a\\"b"@x>')?.localPart, 'a"b');
  assert.equal(ok('<"a>b@c"@x>')?.localPart, 'a>b@c');
  assert.equal(ok('<""@x>')?.address, '""@x');
  bad('<"abc@x>');
  bad('<"a\tb"@x>');
});

test('dot-string rules', () => {
  for (const t of ['<.a@x>', '<a.@x>', '<a..b@x>', '<a b@x>', '<a(b)@x>', '<@x>', '<a>', '<a@>', 'a@x', '<a@x', 'a@x>']) bad(t);
});

test('domains and address literals', () => {
  assert.equal(ok('<a@[192.0.2.1]>')?.domain, '[192.0.2.1]');
  assert.equal(ok('<a@[IPv6:2001:db8::1]>')?.domain, '[IPv6:2001:db8::1]');
  assert.equal(ok('<a@[ipv6:::ffff:192.0.2.1]>')?.domain, '[ipv6:::ffff:192.0.2.1]');
  assert.equal(ok('<a@[x-tag:some@content]>')?.domain, '[x-tag:some@content]');
  for (const d of ['-a.b', 'a-.b', 'a..b', 'a.b.', '.a', 'a_b.c', `${'a'.repeat(64)}.com`]) bad(`<a@${d}>`);
  for (const l of ['[256.0.0.1]', '[1.2.3]', '[1.2.3.4.5]', '[IPv6:1::2::3]', '[IPv6:12345::]', '[IPv6:1:2:3:4:5:6:7]', '[IPv6:1.2.3.4::]', '[tag:a b]', '[]']) {
    bad(`<a@${l}>`);
  }
  assert.ok(isValidDomain('a-b.c0'));
  assert.ok(isValidAddressLiteral('[IPv6:1:2:3:4:5:6:7:8]'));
  assert.ok(isIPv6('1:2:3:4:5:6:1.2.3.4'));
  assert.ok(isIPv6('::'));
  assert.ok(!isIPv6('1:2:3:4:5:6:7:1.2.3.4'));
});

test('source routes are accepted and dropped', () => {
  assert.equal(ok('<@a.example,@b.example:user@c.example>')?.address, 'user@c.example');
  bad('<@a.example:@b:user@c>');
  bad('<@a..b:user@c>');
  bad('<@a.example user@c>');
});

test('UTF-8 addresses set utf8', () => {
  const m = ok('<jöran@bücher.example>');
  assert.equal(m?.utf8, true);
  assert.equal(m?.address, 'jöran@bücher.example');
  assert.equal(ok('<"ü x"@a>')?.utf8, true);
  assert.equal(ok('<a@b>')?.utf8, false);
});

test('length limits in UTF-8 octets', () => {
  ok(`<${'a'.repeat(64)}@x>`);
  bad(`<${'a'.repeat(65)}@x>`);
  bad(`<${'ü'.repeat(33)}@x>`);
  const label = 'b'.repeat(60);
  const domain = [label, label, label, 'c'.repeat(60)].join('.');
  ok(`<a@${domain}>`);
  bad(`<${'a'.repeat(64)}@${domain}>`);
});

test('forward path: Postmaster without domain, any case', () => {
  const r = parseForwardPath('<PostMaster>');
  assert.ok(r.ok);
  assert.deepEqual(r.path, { localPart: 'PostMaster', domain: '', utf8: false, address: 'PostMaster' });
  assert.equal(formatPath(r.path), '<PostMaster>');
  assert.equal(parseReversePath('<postmaster>').ok, false);
  assert.equal(parseForwardPath('<>').ok, false);
  assert.equal(parseForwardPath('<bob>').ok, false);
});

test('formatPath', () => {
  assert.equal(formatPath(null), '<>');
  assert.equal(formatPath(ok('<"a b"@x>')), '<"a b"@x>');
});

test('format(parse(x)) parses to the same mailbox (property)', () => {
  const localChar = fc.constantFrom(...'abcXYZ09.!#-_ "\\@<>ü');
  const arb = fc.tuple(fc.array(localChar, { minLength: 1, maxLength: 20 }).map((c) => c.join('')), fc.constantFrom('x.example', '[10.0.0.1]', 'ü.de'));
  fc.assert(
    fc.property(arb, ([local, domain]) => {
      const quoted = `"${local.replace(/["\\]/g, '\\$&')}"`;
      const first = parseReversePath(`<${quoted}@${domain}>`);
      if (!first.ok || first.path === null) return;
      const again = parseReversePath(formatPath(first.path));
      assert.ok(again.ok);
      assert.deepEqual(again.path, first.path);
    }),
    { numRuns: 500 },
  );
});
