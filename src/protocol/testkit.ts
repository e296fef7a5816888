/**
 * @module protocol/testkit
 * Test-only helpers for the codec's split-point tests: cut a byte corpus at chosen positions,
 * at every single position, or into 1-byte pushes, and join outputs back for comparison.
 *
 * Who calls it: the *.test.ts files of protocol/ only; nothing in the product imports it and
 * index.ts does not export it.
 *
 * Failure behaviour: pure functions, no throws on any input (cut positions are taken modulo
 * the corpus length, duplicates collapse).
 *
 * Trust: none needed; it allocates only views of the corpus it is given.
 */
import { Buffer } from 'node:buffer';

/** Cuts `buf` at `cuts` (any integers, reduced modulo length+1), keeping empty pieces out. */
export function segment(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.abs(c) % (buf.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const p of [...points, buf.length]) {
    if (p > from) pieces.push(buf.subarray(from, p));
    from = Math.max(from, p);
  }
  return pieces;
}

/** Every two-piece split, including the empty ones at either end. */
export function* everySplit(buf: Buffer): Generator<Buffer[]> {
  for (let i = 0; i <= buf.length; i++) yield [buf.subarray(0, i), buf.subarray(i)];
}

export function bytewise(buf: Buffer): Buffer[] {
  return Array.from({ length: buf.length }, (_, i) => buf.subarray(i, i + 1));
}

export function join(chunks: readonly Uint8Array[]): Buffer {
  return Buffer.concat(chunks);
}

export const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');
