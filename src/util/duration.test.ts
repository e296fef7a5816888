/**
 * @module util/duration.test
 * parseDuration / formatDuration: every unit, compounds, fractions, the refusals and their
 * reasons, and (fast-check) that formatting then parsing gives back the same milliseconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatDuration, parseDuration } from './duration.js';

test('parseDuration: each unit, compounds and fractions', () => {
  const cases: Array<[string, number]> = [
    ['100ms', 100], ['1s', 1000], ['5m', 300_000], ['1h', 3_600_000], ['5d', 432_000_000],
    ['1h30m', 5_400_000], ['1.5h', 5_400_000], ['0ms', 0], [' 10s ', 10_000], ['1m500ms', 60_500],
  ];
  for (const [text, ms] of cases) assert.deepEqual(parseDuration(text), { ok: true, value: ms }, text);
});

test('parseDuration: refusals say why', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /is empty/], ['300', /has no unit/], ['5x', /is not a duration/], ['5 m', /is not a duration/],
    ['-5s', /is not a duration/], ['1.5ms', /whole number of milliseconds/], ['m', /is not a duration/],
    ['5min', /at "in"/], ['1e3s', /is not a duration/],
  ];
  for (const [text, re] of bad) {
    const r = parseDuration(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.match(r.reason, re, text);
  }
});

test('formatDuration: shortest exact spelling', () => {
  assert.equal(formatDuration(0), '0ms');
  assert.equal(formatDuration(100), '100ms');
  assert.equal(formatDuration(300_000), '5m');
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(432_000_000), '5d');
  assert.equal(formatDuration(90_061_001), '1d1h1m1s1ms');
});

test('formatDuration then parseDuration is the identity', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 400 * 86_400_000 }), (ms) => {
    assert.deepEqual(parseDuration(formatDuration(ms)), { ok: true, value: ms });
  }));
});
