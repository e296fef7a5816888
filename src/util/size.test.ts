/**
 * @module util/size.test
 * parseSize / formatSize: decimal and binary units in any case, refusals and their reasons, and
 * (fast-check) that formatting then parsing gives back the same octets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatSize, parseSize } from './size.js';

test('parseSize: octets, decimal and binary units, any case', () => {
  const cases: Array<[string, number]> = [
    ['1048576', 1_048_576], ['0', 0], ['10B', 10], ['1K', 1000], ['1KB', 1000], ['1k', 1000], ['2M', 2_000_000],
    ['1G', 1e9], ['1KiB', 1024], ['50MiB', 52_428_800], ['50mib', 52_428_800], ['1GiB', 1_073_741_824],
    ['1.5KiB', 1536], ['10 MiB', 10_485_760],
  ];
  for (const [text, n] of cases) assert.deepEqual(parseSize(text), { ok: true, value: n }, text);
});

test('parseSize: refusals say why', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /is not a size/], ['abc', /is not a size/], ['-1', /is not a size/], ['10Q', /unknown unit "Q"/],
    ['1.5', /whole number of octets/], ['1.0001K', /whole number of octets/], ['10TiB', /unknown unit/],
    ['99999999999999999G', /too large/],
  ];
  for (const [text, re] of bad) {
    const r = parseSize(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.match(r.reason, re, text);
  }
});

test('formatSize prefers exact binary units, then decimal, then octets', () => {
  assert.equal(formatSize(52_428_800), '50MiB');
  assert.equal(formatSize(1024), '1KiB');
  assert.equal(formatSize(1000), '1K');
  assert.equal(formatSize(2_000_000), '2M');
  assert.equal(formatSize(1023), '1023');
});

test('formatSize then parseSize is the identity', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 40 }), (n) => {
    assert.deepEqual(parseSize(formatSize(n)), { ok: true, value: n });
  }));
});
