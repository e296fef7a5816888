import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RETRY_JITTER, nextStep, retryDelay } from './schedule.js';

const MIN = 60_000;
const policy = { retry: [1 * MIN, 5 * MIN, 15 * MIN, 60 * MIN, 240 * MIN], maxAge: 5 * 24 * 60 * MIN };

test('delays follow the list and the last one repeats', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 50].map((n) => retryDelay(policy, n) / MIN), [1, 5, 15, 60, 240, 240, 240]);
});

test('the next attempt is the delay from now, within the jitter', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100 }), fc.double({ min: 0, max: 0.9999, noNaN: true }), (n, r) => {
      const step = nextStep(policy, { receivedAt: 0, now: 1_000, failedAttempts: n }, () => r);
      if (step.kind !== 'retry') return true; // late attempts may expire
      const base = retryDelay(policy, n);
      return Math.abs(step.at - 1_000 - base) <= base * RETRY_JITTER + 1;
    }),
  );
});

test('a message expires when its next attempt would pass the maximum age', () => {
  const young = nextStep(policy, { receivedAt: 0, now: MIN, failedAttempts: 1 }, () => 0.5);
  assert.equal(young.kind, 'retry');
  const old = nextStep(policy, { receivedAt: 0, now: policy.maxAge - MIN, failedAttempts: 30 }, () => 0.5);
  assert.equal(old.kind, 'expire');
  const tight = nextStep({ retry: [1_000], maxAge: 1_500 }, { receivedAt: 0, now: 1_000, failedAttempts: 1 }, () => 0.5);
  assert.equal(tight.kind, 'expire');
});
