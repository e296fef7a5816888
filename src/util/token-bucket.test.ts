/**
 * @module util/token-bucket.test
 * Properties of the token bucket and its keyed table, on an explicit clock: no interval ever
 * lets through more than a burst plus the refill; a refused take passes once its retryAfterMs has
 * gone by; dropping idle keys never changes a decision; the table never holds more than maxKeys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BucketTable, take, tokensAt } from './token-bucket.js';
import type { BucketRate, BucketState } from './token-bucket.js';

const rateArb = fc.record({ capacity: fc.integer({ min: 1, max: 20 }), windowMs: fc.integer({ min: 1, max: 10_000 }) });
/** Steps of the clock (ms, possibly 0) each followed by a take of 1 or 2 tokens. */
const stepsArb = fc.array(fc.record({ dt: fc.integer({ min: 0, max: 3_000 }), n: fc.integer({ min: 1, max: 2 }) }), { maxLength: 200 });

test('no interval lets through more than the burst plus what refilled in it', () => {
  fc.assert(
    fc.property(rateArb, stepsArb, (rate, steps) => {
      let state: BucketState | undefined;
      let now = 0;
      const granted: Array<{ at: number; n: number }> = [];
      for (const step of steps) {
        now += step.dt;
        const r = take(state, rate, now, step.n);
        state = r.state;
        if (r.allowed) granted.push({ at: now, n: step.n });
      }
      for (let i = 0; i < granted.length; i++) {
        let sum = 0;
        for (let j = i; j < granted.length; j++) {
          sum += (granted[j] as { n: number }).n;
          const span = (granted[j] as { at: number }).at - (granted[i] as { at: number }).at;
          const bound = rate.capacity + (span * rate.capacity) / rate.windowMs;
          assert.ok(sum <= bound + 1e-9, `${sum} tokens granted in ${span}ms; the bound is ${bound}`);
        }
      }
    }),
  );
});

test('a refused take passes at exactly retryAfterMs despite float refill (found by fast-check, seed 1444775591)', () => {
  const rate = { capacity: 4, windowMs: 9280 };
  const first = take(undefined, rate, 0, 2);
  assert.ok(first.allowed);
  const second = take(first.state, rate, 7, 2);
  assert.ok(second.allowed);
  const refused = take(second.state, rate, 10, 2);
  assert.ok(!refused.allowed);
  assert.equal(take(refused.state, rate, 10 + refused.retryAfterMs, 2).allowed, true);
});

test('a refused take passes once retryAfterMs has gone by, and a full window refills the whole burst', () => {
  fc.assert(
    fc.property(rateArb, stepsArb, (rate, steps) => {
      let state: BucketState | undefined;
      let now = 0;
      for (const step of steps) {
        now += step.dt;
        const n = Math.min(step.n, rate.capacity);
        const r = take(state, rate, now, n);
        if (!r.allowed) {
          assert.ok(r.retryAfterMs > 0);
          assert.equal(take(r.state, rate, now + r.retryAfterMs, n).allowed, true, 'still refused after retryAfterMs');
          assert.equal(r.state.tokens, tokensAt(state, rate, now), 'a refused take cost tokens');
        }
        state = r.state;
      }
      assert.equal(tokensAt(state, rate, now + rate.windowMs), rate.capacity);
    }),
  );
});

test('tokens never exceed the capacity, and a clock that steps back mints none', () => {
  fc.assert(
    fc.property(rateArb, fc.double({ min: 0, max: 20, noNaN: true }), fc.integer({ min: -1e6, max: 1e9 }), (rate, tokens, dt) => {
      const state = { tokens: Math.min(tokens, rate.capacity), at: 1_000_000 };
      const t = tokensAt(state, rate, 1_000_000 + dt);
      assert.ok(t <= rate.capacity);
      if (dt <= 0) assert.equal(t, state.tokens);
    }),
  );
});

/** A reference without any eviction: every key keeps its state for ever. */
function referenceDecisions(rate: BucketRate, events: ReadonlyArray<{ dt: number; key: number }>): boolean[] {
  const states = new Map<number, BucketState>();
  let now = 0;
  return events.map((e) => {
    now += e.dt;
    const r = take(states.get(e.key), rate, now);
    states.set(e.key, r.state);
    return r.allowed;
  });
}

const keyedArb = fc.array(fc.record({ dt: fc.integer({ min: 0, max: 2_000 }), key: fc.integer({ min: 0, max: 30 }) }), { maxLength: 300 });

test('dropping idle keys never changes a decision (the table agrees with a table that forgets nothing)', () => {
  fc.assert(
    fc.property(rateArb, keyedArb, (rate, events) => {
      let now = 0;
      const table = new BucketTable(rate, { maxKeys: 1_000, now: () => now });
      const expected = referenceDecisions(rate, events);
      events.forEach((e, i) => {
        now += e.dt;
        assert.equal(table.take(String(e.key)).allowed, expected[i], `event ${i}`);
      });
    }),
  );
});

test('the table never holds more than maxKeys, whatever the keys', () => {
  fc.assert(
    fc.property(rateArb, fc.integer({ min: 1, max: 50 }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 500 }), (rate, maxKeys, keys) => {
      const table = new BucketTable(rate, { maxKeys, now: () => 0 });
      for (const key of keys) {
        table.take(key);
        assert.ok(table.size <= maxKeys, `${table.size} keys held, bound ${maxKeys}`);
      }
    }),
  );
});

test('an address-spraying burst leaves the table at its bound, and quiet time empties it', () => {
  let now = 0;
  const table = new BucketTable({ capacity: 5, windowMs: 60_000 }, { maxKeys: 1_000, now: () => now });
  for (let i = 0; i < 20_000; i++) table.take(`198.18.${i >> 8}.${i & 255}:${i}`);
  assert.equal(table.size, 1_000);
  // The sprayed keys spent one token each; a minute later they are full, so idle, and each take drops two.
  now += 60_000;
  for (let i = 0; i < 600; i++) table.take('203.0.113.9');
  assert.equal(table.size, 1, 'only the key in use is left');
});

test('an unknown key has the full burst; reconfigure keeps what the buckets hold', () => {
  let now = 0;
  const table = new BucketTable({ capacity: 3, windowMs: 1_000 }, { maxKeys: 10, now: () => now });
  assert.equal(table.peek('a'), 3);
  assert.deepEqual([1, 2, 3, 4].map(() => table.take('a').allowed), [true, true, true, false]);
  table.reconfigure({ capacity: 6, windowMs: 1_000 }, 10);
  assert.equal(table.take('a').allowed, false, 'a larger burst does not refill a spent bucket');
  now += 500;
  assert.equal(table.peek('a'), 3);
  assert.throws(() => table.reconfigure({ capacity: 0, windowMs: 1_000 }, 10), /at least 1/);
});

test('a client that keeps sending is not forgiven by a spray of new keys (eviction spares recently used keys)', () => {
  const table = new BucketTable({ capacity: 2, windowMs: 60_000 }, { maxKeys: 100, now: () => 0 });
  table.take('hot');
  table.take('hot');
  for (let i = 0; i < 10_000; i++) {
    table.take(`spray-${i}`);
    assert.equal(table.take('hot').allowed, false, `the hot key was forgotten after ${i} sprayed keys`);
  }
  assert.equal(table.size, 100);
});
