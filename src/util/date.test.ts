import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rfc5322Date } from './date.js';

describe('util/date', () => {
  it('formats UTC with a numeric zone, and a new second as soon as it starts', () => {
    const t = Date.UTC(2026, 10, 29, 18, 47, 1, 999);
    assert.equal(rfc5322Date(t), 'Sun, 29 Nov 2026 18:47:01 +0000');
    assert.equal(rfc5322Date(t - 999), 'Sun, 29 Nov 2026 18:47:01 +0000');
    assert.equal(rfc5322Date(t + 1), 'Sun, 29 Nov 2026 18:47:02 +0000');
    assert.equal(rfc5322Date(t - 1000), 'Sun, 29 Nov 2026 18:47:00 +0000');
    assert.equal(rfc5322Date(-1), 'Wed, 31 Dec 1969 23:59:59 +0000');
    assert.equal(rfc5322Date(0), 'Thu, 01 Jan 1970 00:00:00 +0000');
  });
});
