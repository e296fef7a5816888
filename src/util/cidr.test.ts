/**
 * @module util/cidr.test
 * CIDR parsing (canonical text, strict refusals incl. host bits and zone ids) and cidrContains
 * for IPv4, IPv6 and IPv4-mapped IPv6 clients (`::ffff:127.0.0.1` is in 127.0.0.0/8).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, compileCidrList, isIPv4Mapped, parseCidr, parseCidrList, type Cidr } from './cidr.js';

function list(...items: string[]): readonly Cidr[] {
  return compileCidrList(items);
}

test('parseCidr canonicalises IPv4, IPv6 and bare addresses', () => {
  const cases: Array<[string, string]> = [
    ['127.0.0.0/8', '127.0.0.0/8'], ['10.1.2.3', '10.1.2.3/32'], ['0.0.0.0/0', '0.0.0.0/0'],
    ['::1/128', '::1/128'], ['::1', '::1/128'], ['2001:DB8::/32', '2001:db8::/32'], ['::/0', '::/0'],
    ['2001:db8:0:0:1:0:0:0/128', '2001:db8:0:0:1::/128'], ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1/128'], ['fe80::/10', 'fe80::/10'],
    ['::ffff:10.0.0.0/104', '::ffff:a00:0/104'], ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8/128'],
  ];
  for (const [text, canon] of cases) {
    const r = parseCidr(text);
    assert.ok(r.ok, `${text}: ${r.ok ? '' : r.reason}`);
    if (r.ok) assert.equal(r.value.text, canon, text);
  }
});

test('parseCidr refuses with a reason', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /is empty/], ['10.0.0.0/33', /prefix length 33, too long for IPv4 \(at most 32\)/],
    ['::/129', /too long for IPv6/], ['10.0.0.0/x', /prefix length "x", not a number 0..32/],
    ['10.0.0.0/', /prefix length ""/], ['10.0.0.1/8', /host bits set \(did you mean 10\.0\.0\.0\/8 or 10\.0\.0\.1\/32\?\)/],
    ['2001:db8::1/32', /did you mean 2001:db8::\/32/], ['256.0.0.0/8', /not an IPv4 or IPv6 network/],
    ['localhost', /not an IPv4 or IPv6 network/], ['fe80::1%eth0/128', /not an IPv4 or IPv6 network/],
    ['10.0.0.0/8/8', /prefix length/], ['[::1]/128', /not an IPv4 or IPv6/],
  ];
  for (const [text, re] of bad) {
    const r = parseCidr(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.match(r.reason, re, text);
  }
});

test('parseCidrList: commas, arrays, empty list, empty items', () => {
  const r = parseCidrList('127.0.0.0/8, ::1/128');
  assert.ok(r.ok);
  if (r.ok) assert.deepEqual(r.value.map((c) => c.text), ['127.0.0.0/8', '::1/128']);
  const arr = parseCidrList(['10.0.0.0/8', '192.168.0.0/16,172.16.0.0/12']);
  assert.ok(arr.ok && arr.value.length === 3);
  assert.deepEqual(parseCidrList(''), { ok: true, value: [] });
  const stray = parseCidrList('10.0.0.0/8,');
  assert.ok(!stray.ok && /empty item/.test(stray.reason));
  const badItem = parseCidrList('10.0.0.0/8,10.0.0.1/8');
  assert.ok(!badItem.ok && badItem.reason.startsWith('"10.0.0.1/8" has host bits set'));
});

test('cidrContains: IPv4', () => {
  const nets = list('127.0.0.0/8', '192.168.1.0/24', '10.9.8.7');
  for (const ip of ['127.0.0.1', '127.255.255.255', '192.168.1.200', '10.9.8.7']) assert.ok(cidrContains(nets, ip), ip);
  for (const ip of ['128.0.0.1', '192.168.2.1', '10.9.8.6', '::1']) assert.ok(!cidrContains(nets, ip), ip);
  assert.ok(cidrContains(list('0.0.0.0/0'), '203.0.113.9'));
  assert.ok(!cidrContains(list('0.0.0.0/0'), '2001:db8::1'), 'an IPv4 network holds no native IPv6 address');
});

test('cidrContains: IPv6', () => {
  const nets = list('::1/128', '2001:db8::/32', 'fe80::/10');
  for (const ip of ['::1', '0:0:0:0:0:0:0:1', '2001:db8::1', '2001:DB8:ffff::', 'febf::1', 'fe80::1%eth0']) {
    assert.ok(cidrContains(nets, ip), ip);
  }
  for (const ip of ['::2', '2001:db9::1', 'fec0::1', '127.0.0.1']) assert.ok(!cidrContains(nets, ip), ip);
});

test('cidrContains: IPv4-mapped IPv6 clients match IPv4 networks, and the reverse', () => {
  const nets = list('127.0.0.0/8', '::1/128');
  assert.ok(cidrContains(nets, '::ffff:127.0.0.1'));
  assert.ok(cidrContains(nets, '::FFFF:127.1.2.3'));
  assert.ok(cidrContains(nets, '0:0:0:0:0:ffff:7f00:1'), 'hex spelling of ::ffff:127.0.0.1');
  assert.ok(!cidrContains(nets, '::ffff:128.0.0.1'));
  assert.ok(!cidrContains(nets, '::127.0.0.1'), 'IPv4-compatible (deprecated) is not IPv4-mapped');
  assert.ok(cidrContains(list('::ffff:0:0/96'), '198.51.100.7'), 'the mapped block holds every IPv4 address');
});

test('cidrContains: garbage addresses are in no network', () => {
  const nets = list('0.0.0.0/0', '::/0');
  for (const ip of ['', 'localhost', '1.2.3', '[::1]', '999.1.1.1']) assert.ok(!cidrContains(nets, ip), ip);
  assert.ok(!cidrContains([], '127.0.0.1'));
});

test('compileCidrList throws on invalid input; isIPv4Mapped', () => {
  assert.throws(() => compileCidrList(['10.0.0.1/8']), /host bits/);
  assert.ok(isIPv4Mapped('::ffff:10.0.0.1'));
  assert.ok(!isIPv4Mapped('10.0.0.1'));
  assert.ok(!isIPv4Mapped('::1'));
});
