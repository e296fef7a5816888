import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ENHANCED_STATUS, enhancedFor, isPermanent, isPositive, isTransient } from './status.js';

test('reply classes', () => {
  assert.deepEqual([250, 354, 421, 550].map(isPositive), [true, true, false, false]);
  assert.deepEqual([250, 354, 421, 550].map(isTransient), [false, false, true, false]);
  assert.deepEqual([250, 354, 421, 550].map(isPermanent), [false, false, false, true]);
});

test('enhancedFor: exact defaults, class defaults, none for 3xx', () => {
  assert.equal(enhancedFor(501), '5.5.4');
  assert.equal(enhancedFor(500), '5.5.2');
  assert.equal(enhancedFor(250), '2.0.0');
  assert.equal(enhancedFor(450), '4.0.0');
  assert.equal(enhancedFor(554), '5.0.0');
  assert.equal(enhancedFor(354), undefined);
});

test('every table entry is a well-formed code with a meaning', () => {
  for (const [code, meaning] of Object.entries(ENHANCED_STATUS)) {
    assert.match(code, /^[245]\.\d{1,3}\.\d{1,3}$/);
    assert.ok(meaning.length > 0);
  }
});
