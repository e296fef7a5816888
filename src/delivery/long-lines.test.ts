/**
 * The long-lines wrapper and counter against a naive whole-buffer reference: at every split point
 * of hand-picked bodies (the CR of a 998-octet line alone at a chunk's end, bare CRs at the limit,
 * LF-only lines) and under fast-check: no output line over 998 octets, the input back exactly when
 * the inserted breaks are taken out, the same output whatever the chunking, and a body without
 * long lines passed through byte-identical and zero-copy.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { LINE_BREAK, LineWrapper, LongLineCounter, MAX_LINE_OCTETS, findLongLine } from './long-lines.js';

const CR = 0x0d;
const LF = 0x0a;
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

/** The rule written the slow way: a CR counts unless an LF or the end of the body follows it. */
function reference(input: Buffer): { out: Buffer; breaks: number } {
  const out: number[] = [];
  let column = 0;
  let breaks = 0;
  for (let i = 0; i < input.length; i++) {
    const b = input[i] as number;
    if (b === LF) {
      out.push(b);
      column = 0;
    } else if (b === CR && (i + 1 === input.length || input[i + 1] === LF)) out.push(b);
    else {
      if (column === MAX_LINE_OCTETS) {
        out.push(CR, LF, 0x20);
        column = 1;
        breaks++;
      }
      out.push(b);
      column++;
    }
  }
  return { out: Buffer.from(out), breaks };
}

/** Longest line of `buf` as LongLineCounter defines a line (LF ends it, a CR before it is not counted). */
function longest(buf: Buffer): number {
  let max = 0;
  let start = 0;
  for (;;) {
    const lf = buf.indexOf(LF, start);
    const end = lf < 0 ? buf.length : lf;
    const length = end - start - (end > start && buf[end - 1] === CR ? 1 : 0);
    max = Math.max(max, length);
    if (lf < 0) return max;
    start = lf + 1;
  }
}

function split(input: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    chunks.push(input.subarray(at, p));
    at = p;
  }
  chunks.push(input.subarray(at));
  return chunks;
}

function run(chunks: readonly Buffer[]): { pieces: Buffer[]; wrapper: LineWrapper } {
  const wrapper = new LineWrapper();
  const pieces: Buffer[] = [];
  for (const c of chunks) pieces.push(...wrapper.push(c));
  pieces.push(...wrapper.end());
  return { pieces, wrapper };
}

/** The input again: every piece but the inserted breaks (recognised by identity, not by content). */
function unwrap(pieces: readonly Buffer[]): Buffer {
  return Buffer.concat(pieces.filter((p) => p !== LINE_BREAK));
}

function count(chunks: readonly Buffer[]): number {
  const c = new LongLineCounter();
  for (const chunk of chunks) c.push(chunk);
  return c.end();
}

const x = (n: number): string => 'x'.repeat(n);

/** `got` is `chunk` itself, or a view of it less a held final CR, maybe after a released CR. */
function assertSameBytes(chunk: Buffer, got: readonly Buffer[]): void {
  const rest = got.length > 0 && got[0]?.length === 1 && got[0][0] === CR && got[0] !== chunk ? got.slice(1) : got;
  assert.ok(rest.length <= 1, `${rest.length} pieces`);
  const p = rest[0];
  if (p === undefined) return assert.ok(chunk.length === 1 && chunk[0] === CR, 'only a lone CR may vanish');
  if (p === chunk) return;
  assert.equal(chunk[chunk.length - 1], CR);
  assert.ok(p.buffer === chunk.buffer && p.byteOffset === chunk.byteOffset && p.length === chunk.length - 1, 'a view without the held CR');
}

const CASES: ReadonlyArray<readonly [string, string]> = [
  ['empty', ''],
  ['998 + CRLF: untouched', `${x(998)}\r\n`],
  ['999: one break', `${x(999)}\r\nnext\r\n`],
  ['5000: five breaks', `Subject: long\r\n\r\n${x(5000)}\r\nend\r\n`],
  ['998 + bare CR + text', `${x(998)}\rabc\r\n`],
  ['998 + CR CR LF', `${x(998)}\r\r\n`],
  ['998 + CR at the very end', `${x(998)}\r`],
  ['LF-only lines', `${x(1500)}\n${x(10)}\n${x(2000)}`],
  ['header folding already present', `Subject: a\r\n ${x(997)}\r\n b\r\n\r\n${x(1996)}\r\n`],
  ['exact multiples', `${x(998 + 997)}\r\n${x(998 + 997 * 2)}\r\n`],
];

describe('delivery/long-lines', () => {
  it('matches the reference on each case, whole', () => {
    const expectedBreaks: Record<string, number> = { '999: one break': 1, '5000: five breaks': 5, '998 + CRLF: untouched': 0, 'exact multiples': 3 };
    for (const [name, text] of CASES) {
      const input = bytes(text);
      const { pieces, wrapper } = run([input]);
      const ref = reference(input);
      assert.ok(Buffer.concat(pieces).equals(ref.out), name);
      assert.equal(wrapper.breaks, ref.breaks, name);
      if (expectedBreaks[name] !== undefined) assert.equal(wrapper.breaks, expectedBreaks[name], name);
      assert.ok(unwrap(pieces).equals(input), `${name}: unwrap restores the input`);
      assert.ok(longest(Buffer.concat(pieces)) <= MAX_LINE_OCTETS, `${name}: no line over 998`);
      assert.equal(wrapper.lines, count([input]), `${name}: lines wrapped = long lines counted`);
    }
  });

  it('gives the same output at every single split point and every pair around the limit', () => {
    for (const [name, text] of CASES) {
      const input = bytes(text);
      const expected = reference(input).out;
      for (let i = 0; i <= input.length; i++) {
        const chunks = [input.subarray(0, i), input.subarray(i)];
        const { pieces } = run(chunks);
        assert.ok(Buffer.concat(pieces).equals(expected), `${name} split at ${i}`);
        assert.ok(unwrap(pieces).equals(input), `${name} split at ${i}: unwrap`);
        assert.equal(count(chunks), count([input]), `${name} split at ${i}: counter`);
      }
      // Pairs of cuts near the places that matter (the limit, the line ends).
      const near = [...new Set([995, 996, 997, 998, 999, 1000, 1001, 1002].filter((n) => n <= input.length))];
      for (const a of near) {
        for (let b = a; b <= Math.min(input.length, a + 4); b++) {
          const { pieces } = run([input.subarray(0, a), input.subarray(a, b), input.subarray(b)]);
          assert.ok(Buffer.concat(pieces).equals(expected), `${name} cuts ${a},${b}`);
        }
      }
    }
  });

  it('one byte at a time', () => {
    for (const [name, text] of CASES) {
      const input = bytes(text);
      const chunks = [...input].map((b) => Buffer.from([b]));
      assert.ok(Buffer.concat(run(chunks).pieces).equals(reference(input).out), name);
    }
  });

  it('a chunk with nothing to break is returned as the same Buffer', () => {
    const w = new LineWrapper();
    const a = bytes(`Subject: x\r\n\r\n${x(998)}\r\n`);
    const b = bytes(`${x(500)}`);
    const c = bytes(`${x(498)}\r\nend\r\n`);
    for (const chunk of [a, b, c]) {
      const out = w.push(chunk);
      assert.equal(out.length, 1);
      assert.equal(out[0], chunk, 'zero-copy');
    }
    assert.deepEqual(w.end(), []);
    assert.equal(w.breaks, 0);
  });

  it('a Uint8Array that is not a Buffer is viewed, not copied', () => {
    const raw = new Uint8Array(Buffer.from(`${x(2000)}\r\n`, 'latin1'));
    const pieces = new LineWrapper().push(raw);
    assert.equal(pieces[0]?.buffer, raw.buffer);
  });

  it('the CR of a 998-octet line, alone at a chunk end, is held until the next octet decides', () => {
    const w = new LineWrapper();
    assert.deepEqual(Buffer.concat(w.push(bytes(`${x(998)}\r`))).length, 998);
    assert.equal(Buffer.concat(w.push(bytes('\nnext\r\n'))).toString('latin1'), '\r\nnext\r\n');
    assert.equal(w.breaks, 0);
    w.push(bytes(`${x(998)}\r`));
    assert.equal(Buffer.concat(w.push(bytes('y\r\n'))).toString('latin1'), '\r\n \ry\r\n');
    assert.equal(w.breaks, 1);
  });

  it('findLongLine stops at the first long line and closes the stream', async () => {
    let closed = false;
    let served = 0;
    async function* body(): AsyncGenerator<Uint8Array> {
      try {
        for (const part of [`a\r\n${x(600)}`, `${x(600)}\r\n`, 'never read']) {
          served++;
          yield bytes(part);
        }
      } finally {
        closed = true;
      }
    }
    assert.equal(await findLongLine(body()), true);
    assert.equal(served, 2);
    assert.equal(closed, true);
    async function* clean(): AsyncGenerator<Uint8Array> {
      yield bytes(`${x(998)}\r`);
      yield bytes(`\n${x(998)}`);
    }
    assert.equal(await findLongLine(clean()), false);
    async function* tail(): AsyncGenerator<Uint8Array> {
      yield bytes(`ok\r\n${x(999)}`);
    }
    assert.equal(await findLongLine(tail()), true, 'a last line without CRLF counts');
  });

  const piece = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 2600 }).map((n) => bytes(x(n))) },
    { weight: 3, arbitrary: fc.constantFrom('\r\n', '\r', '\n', ' ', '\r\n ', '.', '\xff').map(bytes) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)) },
  );
  const material = fc.array(piece, { maxLength: 24 }).map((parts) => Buffer.concat(parts));
  const cuts = fc.array(fc.nat(), { maxLength: 12 });

  it('fast-check: no output line over 998; unwrap restores the input; chunking does not matter', () => {
    fc.assert(
      fc.property(material, cuts, (input, c) => {
        const chunks = split(input, c);
        const { pieces, wrapper } = run(chunks);
        const out = Buffer.concat(pieces);
        assert.ok(longest(out) <= MAX_LINE_OCTETS, `longest ${longest(out)}`);
        assert.equal(count([out]), 0);
        assert.ok(unwrap(pieces).equals(input));
        const ref = reference(input);
        assert.ok(out.equals(ref.out));
        assert.equal(wrapper.breaks, ref.breaks);
        assert.equal(wrapper.lines, count(chunks));
        assert.equal(out.length, input.length + 3 * wrapper.breaks);
      }),
      { numRuns: 400 },
    );
  });

  it('fast-check: a body without long lines goes through byte-identical and zero-copy', () => {
    const short = fc
      .array(fc.oneof(fc.integer({ min: 0, max: 998 }).map((n) => bytes(`${x(n)}\r\n`)), fc.constantFrom(bytes('\r\n'), bytes('.\r\n'))), { maxLength: 30 })
      .map((lines) => Buffer.concat(lines));
    fc.assert(
      fc.property(short, cuts, (input, c) => {
        const chunks = split(input, c);
        const w = new LineWrapper();
        const out: Buffer[] = [];
        for (const chunk of chunks) {
          const got = w.push(chunk);
          // Zero-copy, except the one case that must wait: a chunk ending in the CR of a line of
          // exactly 998 octets comes back without that CR (a view), and the CR leads the next output.
          if (chunk.length > 0) assertSameBytes(chunk, got);
          out.push(...got);
        }
        out.push(...w.end());
        assert.ok(Buffer.concat(out).equals(input));
        assert.equal(w.breaks, 0);
      }),
      { numRuns: 300 },
    );
  });
});
