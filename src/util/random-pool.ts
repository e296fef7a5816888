/**
 * @module util/random-pool
 * Small random values (session ids, queue id tails) from a pooled CSPRNG buffer: one
 * randomFillSync per 4 KiB instead of one per call (what node:crypto's randomUUID does
 * internally). A relay profile showed randomBytes(5) and randomBytes(6), two per message, at
 * 2.5 % of the event loop's time: each call pays the crypto binding's fixed cost.
 * The bytes are as random as randomBytes'; each is handed out once. Not for key material that
 * must not sit in the heap before use (nothing in Postwire draws keys from it).
 */
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let offset = POOL_SIZE;

/** `n` fresh random bytes (a copy: the caller may keep them); n at most 4096. */
export function pooledRandomBytes(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > POOL_SIZE) throw new RangeError(`pooledRandomBytes: ${n} is not an integer in 0..${POOL_SIZE}`);
  if (offset + n > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  offset += n;
  return out;
}
