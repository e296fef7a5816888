import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pooledRandomBytes } from './random-pool.js';

describe('util/random-pool', () => {
  it('hands out each pooled byte once, across refills, as copies the caller may keep', () => {
    // 6-byte draws over several 4 KiB refills: a repeated 48-bit value would mean a byte range
    // handed out twice (or a refill that did not happen).
    const seen = new Set<string>();
    const kept: Buffer[] = [];
    for (let i = 0; i < 5000; i++) {
      const b = pooledRandomBytes(6);
      assert.equal(b.length, 6);
      seen.add(b.toString('hex'));
      if (i < 10) kept.push(b);
    }
    assert.equal(seen.size, 5000);
    const copy = kept.map((b) => b.toString('hex'));
    for (let i = 0; i < 2000; i++) pooledRandomBytes(8);
    assert.deepEqual(kept.map((b) => b.toString('hex')), copy, 'a refill does not change bytes already handed out');
  });

  it('refuses a size it cannot serve', () => {
    assert.throws(() => pooledRandomBytes(4097), RangeError);
    assert.throws(() => pooledRandomBytes(-1), RangeError);
    assert.equal(pooledRandomBytes(0).length, 0);
  });
});
