import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { NewlineNormalizer, ReferenceDataDecoder, ReferenceDotEncoder, bdatCommand, type BareNewlinePolicy } from './dot.js';
import { DataDecoder, DotEncoder } from './dot-simd.js';
import { ProtocolError } from './reply.js';
import { bytes, bytewise, everySplit, join, segment } from './testkit.js';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

interface Decoded {
  body: string;
  done: boolean;
  rest: string | undefined;
  bare: number;
  size: number;
  overflow: boolean;
  ends: number;
}

function decode(pieces: readonly Buffer[], policy: BareNewlinePolicy = 'normalize', max = 1e9): Decoded {
  const d = new DataDecoder({ maxMessageSize: max, bareNewline: policy });
  const out: Buffer[] = [];
  let ends = 0;
  let rest: Buffer[] | undefined;
  for (const p of pieces) {
    if (rest) {
      rest.push(p);
      continue;
    }
    const step = d.push(p);
    out.push(...step.chunks);
    if (step.done) {
      ends++;
      rest = [step.rest ?? Buffer.alloc(0)];
    }
  }
  return {
    body: join(out).toString('latin1'),
    done: rest !== undefined,
    rest: rest && join(rest).toString('latin1'),
    bare: d.bareNewlines,
    size: d.size,
    overflow: d.overflow,
    ends,
  };
}

/** An obviously-correct byte-at-a-time model of the decoder over a whole input. */
function model(input: Buffer, policy: BareNewlinePolicy): { body: string; rest: string | undefined; bare: number } {
  const out: number[] = [];
  let bare = 0;
  let stopped = false;
  const put = (...b: number[]): void => void (stopped || out.push(...b));
  const bareNewline = (): void => {
    bare++;
    if (policy === 'reject') stopped = true;
    put(CR, LF);
  };
  let lineStart = true;
  let i = 0;
  const result = (rest: string | undefined) => ({ body: Buffer.from(out).toString('latin1'), rest, bare });
  while (i < input.length) {
    if (lineStart && input[i] === DOT) {
      if (input[i + 1] === CR && input[i + 2] === LF) return result(input.subarray(i + 3).toString('latin1'));
      i++;
    }
    lineStart = false;
    if (i >= input.length) break;
    const b = input[i] ?? 0;
    if (b === CR && i + 1 >= input.length) break;
    if (b === CR && input[i + 1] === LF) {
      put(CR, LF);
      i += 2;
      lineStart = true;
    } else if (b === CR || b === LF) {
      bareNewline();
      i++;
    } else {
      put(b);
      i++;
    }
  }
  return result(undefined);
}

/** What a body should decode to after a DotEncoder round trip: bare CR/LF as CRLF, CRLF-terminated. */
function normalized(input: Buffer): string {
  const text = input.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n');
  return text === '' || text.endsWith('\r\n') ? text : `${text}\r\n`;
}

function encode(pieces: readonly Buffer[]): Buffer {
  const e = new DotEncoder();
  const out = pieces.flatMap((p) => e.push(p));
  out.push(e.end());
  return join(out);
}

const SMUGGLE = 'MAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsecond\r\n';
const VARIANTS = ['\n.\n', '\n.\r\n', '\r\n.\n', '\r.\r', '\r\n.\r', '\r.\n', '\n.\r'];

test('end-of-data is CRLF.CRLF; body keeps the final CRLF; rest is what follows', () => {
  assert.deepEqual(decode([bytes('Subject: a\r\n\r\nhi\r\n.\r\nQUIT\r\n')]), {
    body: 'Subject: a\r\n\r\nhi\r\n',
    done: true,
    rest: 'QUIT\r\n',
    bare: 0,
    size: 18,
    overflow: false,
    ends: 1,
  });
});

test('a first line of "." is an empty message', () => {
  const r = decode([bytes('.\r\nNOOP\r\n')]);
  assert.equal(r.body, '');
  assert.equal(r.rest, 'NOOP\r\n');
});

test('un-stuffing removes exactly one leading dot of CRLF lines only', () => {
  const r = decode([bytes('..a\r\n...\r\nx.y\r\n. \r\n.\r\n')]);
  assert.equal(r.body, '.a\r\n..\r\nx.y\r\n \r\n');
});

test('a lone dot line not followed by CRLF is not end-of-data', () => {
  assert.equal(decode([bytes('a\r\n.x\r\n.\r\n')]).body, 'a\r\nx\r\n');
});

for (const variant of VARIANTS) {
  const name = JSON.stringify(variant);
  const input = bytes(`first${variant}${SMUGGLE}\r\n.\r\nAFTER`);
  test(`smuggling variant ${name}: one end-of-data, at the real end`, () => {
    const r = decode([input]);
    assert.equal(r.ends, 1);
    assert.equal(r.rest, 'AFTER');
    assert.ok(r.body.includes('MAIL FROM:<x@y>'), 'smuggled text stays in the body');
    assert.ok(r.body.endsWith('second\r\n\r\n'));
    assert.doesNotMatch(r.body, /\r(?!\n)|(?<!\r)\n/, 'no bare CR/LF');
    assert.ok(r.bare > 0);
    assert.deepEqual(r, { ...model(input, 'normalize'), done: true, size: r.body.length, overflow: false, ends: 1 });
    for (const pieces of everySplit(input)) assert.deepEqual(decode(pieces), r);
  });
  test(`smuggling variant ${name}: reject mode flags it and still finds the real end`, () => {
    const r = decode([input], 'reject');
    assert.equal(r.ends, 1);
    assert.equal(r.rest, 'AFTER');
    assert.ok(r.bare > 0);
    assert.ok(!r.body.includes('MAIL FROM'), 'output stopped at the first bare newline');
    assert.deepEqual(decode(bytewise(input), 'reject'), r);
  });
}

test('normalised smuggling body re-encodes with the dot stuffed', () => {
  const r = decode([bytes(`a\n.\nMAIL FROM:<x@y>\r\n.\r\n`)]);
  assert.equal(r.body, 'a\r\n.\r\nMAIL FROM:<x@y>\r\n');
  assert.equal(encode([bytes(r.body)]).toString('latin1'), 'a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n');
});

test('NUL, 8-bit and very long lines pass through byte-exact', () => {
  const body = Buffer.concat([bytes('\0\xff\x80 '), Buffer.alloc(100_000, 0x41), bytes('\r\n')]);
  const r = decode([body, bytes('.\r\n')]);
  assert.equal(r.body, body.toString('latin1'));
});

test('overflow: output stops past maxMessageSize, size keeps counting, end still found', () => {
  const r = decode([bytes('12345\r\n'), bytes('67890\r\n'), bytes('abc\r\n.\r\nQUIT')], 'normalize', 10);
  assert.equal(r.body, '12345\r\n');
  assert.equal(r.size, 19);
  assert.equal(r.overflow, true);
  assert.equal(r.rest, 'QUIT');
});

test('push after end-of-data throws PUSH_AFTER_END', () => {
  const d = new DataDecoder({ maxMessageSize: 100, bareNewline: 'normalize' });
  assert.equal(d.push(bytes('.\r\n')).done, true);
  assert.throws(() => d.push(bytes('x')), (e: unknown) => e instanceof ProtocolError && e.code === 'PUSH_AFTER_END');
});

test('plain chunks come out as the same buffer, not copies', () => {
  const d = new DataDecoder({ maxMessageSize: 1e9, bareNewline: 'normalize' });
  const chunk = bytes('hello\r\nworld\r\n');
  assert.equal(d.push(chunk).chunks[0], chunk);
  const step = d.push(bytes('..x\r\n'));
  assert.equal(step.chunks.length, 1);
});

test('decoder memory stays bounded: 50 MB single line, outputs are views of the input', () => {
  const d = new DataDecoder({ maxMessageSize: 1e12, bareNewline: 'normalize' });
  const chunk = Buffer.alloc(64 * 1024, 0x78);
  const before = process.memoryUsage().arrayBuffers;
  let total = 0;
  for (let sent = 0; sent < 50 * 1024 * 1024; sent += chunk.length) {
    for (const out of d.push(chunk).chunks) {
      assert.equal(out.buffer, chunk.buffer);
      total += out.length;
    }
  }
  const step = d.push(bytes('\r\n.\r\n'));
  assert.equal(step.done, true);
  assert.equal(total, 50 * 1024 * 1024);
  assert.equal(d.size, total + 2);
  assert.ok(process.memoryUsage().arrayBuffers - before < 8 * 1024 * 1024);
});

/** Random message material weighted toward the interesting bytes. */
const piece = fc.oneof(
  fc.constantFrom('\r\n', '\r', '\n', '.', '..', '\r\n.', '\r\n.\r', '\0', '\xff\xfe', 'text', 'x'.repeat(1200)).map(bytes),
  fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
);
const material = fc.array(piece, { maxLength: 30 }).map((parts) => Buffer.concat(parts));
const cuts = fc.array(fc.nat(), { maxLength: 30 });
const policy = fc.constantFrom<BareNewlinePolicy>('normalize', 'reject');

test('decoder equals the byte-at-a-time model, in any segmentation (property)', () => {
  fc.assert(
    fc.property(material, cuts, policy, (input, c, p) => {
      const r = decode(segment(input, c), p);
      const m = model(input, p);
      assert.deepEqual({ body: r.body, rest: r.rest, bare: r.bare }, m);
    }),
    { numRuns: 1000 },
  );
});

test('decoder split at every position and byte-by-byte equals one push', () => {
  const input = bytes(`..a\r\nb\rc\nd\r\n.\r\r\n\r\n.\n${'z'.repeat(1100)}\r\n\r\n.\r\nQUIT\r\n`);
  const whole = decode([input]);
  assert.equal(whole.done, true);
  for (const pieces of everySplit(input)) assert.deepEqual(decode(pieces), whole);
  assert.deepEqual(decode(bytewise(input)), whole);
  assert.deepEqual(decode(bytewise(input), 'reject'), decode([input], 'reject'));
});

test('decode(encode(x)) == normalize(x) and the encoding is clean (property)', () => {
  fc.assert(
    fc.property(material, cuts, cuts, (input, c1, c2) => {
      const wire = encode(segment(input, c1));
      const text = wire.toString('latin1');
      assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/, 'no bare CR/LF on the wire');
      const terminator = text.indexOf('\r\n.\r\n');
      assert.ok(text === '.\r\n' || terminator === text.length - 5, 'CRLF.CRLF only as the terminator');
      assert.ok(text === '.\r\n' || !text.startsWith('.\r\n'));
      const r = decode(segment(wire, c2));
      assert.equal(r.done, true);
      assert.equal(r.rest, '');
      assert.equal(r.bare, 0);
      assert.equal(r.body, normalized(input));
    }),
    { numRuns: 1000 },
  );
});

/** Runs a decoder class over pieces; every observable the callers use. */
function decodeWith(make: () => ReferenceDataDecoder | DataDecoder, pieces: readonly Buffer[]): unknown {
  const d = make();
  const out: Buffer[] = [];
  let rest: Buffer[] | undefined;
  for (const p of pieces) {
    if (rest) rest.push(p);
    else {
      const step = d.push(p);
      out.push(...step.chunks);
      if (step.done) rest = [step.rest ?? Buffer.alloc(0)];
    }
  }
  const overflow = d.overflow;
  return { body: overflow ? '(overflow)' : join(out).toString('latin1'), done: rest !== undefined, rest: rest && join(rest).toString('latin1'), bare: d.bareNewlines, size: d.size, overflow };
}

/** Material that also crosses the WebAssembly decoder's 64 KiB slices, with breaks near the edges. */
const wide = fc.oneof(
  { weight: 4, arbitrary: piece },
  { weight: 1, arbitrary: fc.integer({ min: 65_500, max: 65_540 }).map((n) => Buffer.alloc(n, 0x61)) },
);
const wideMaterial = fc.array(wide, { maxLength: 12 }).map((parts) => Buffer.concat(parts));
const wideCuts = fc.array(fc.integer({ min: 0, max: 200_000 }), { maxLength: 8 });

test('DataDecoder (WebAssembly) equals ReferenceDataDecoder on any input and segmentation (property)', () => {
  fc.assert(
    fc.property(wideMaterial, wideCuts, policy, fc.constantFrom(1e9, 100, 70_000), (input, c, p, max) => {
      const pieces = segment(input, c);
      const options = { maxMessageSize: max, bareNewline: p };
      assert.deepEqual(decodeWith(() => new DataDecoder(options), pieces), decodeWith(() => new ReferenceDataDecoder(options), pieces));
    }),
    { numRuns: 400 },
  );
});

test('DataDecoder: a CRLF and a dot line split by the 64 KiB slice edge inside one push', () => {
  for (let edge = 65_530; edge <= 65_540; edge++) {
    const input = Buffer.concat([Buffer.alloc(edge, 0x62), bytes('\r\n..x\r\n.\r\nQUIT\r\n')]);
    const options = { maxMessageSize: 1e9, bareNewline: 'normalize' as const };
    const fast = decodeWith(() => new DataDecoder(options), [input]);
    assert.deepEqual(fast, decodeWith(() => new ReferenceDataDecoder(options), [input]));
    assert.deepEqual(fast, { body: `${'b'.repeat(edge)}\r\n.x\r\n`, done: true, rest: 'QUIT\r\n', bare: 0, size: edge + 6, overflow: false });
  }
});

test('DotEncoder (WebAssembly) equals ReferenceDotEncoder on any input and segmentation (property)', () => {
  fc.assert(
    fc.property(wideMaterial, wideCuts, (input, c) => {
      const pieces = segment(input, c);
      const fast = new DotEncoder();
      const reference = new ReferenceDotEncoder();
      const a = join([...pieces.flatMap((x) => fast.push(x)), fast.end()]);
      const b = join([...pieces.flatMap((x) => reference.push(x)), reference.end()]);
      assert.ok(a.equals(b));
    }),
    { numRuns: 400 },
  );
});

test('unchanged chunks pass through as the caller\'s buffer; changed ones are fresh copies', () => {
  const e = new DotEncoder();
  const plain = bytes('no dots here\r\n');
  assert.equal(e.push(plain)[0], plain);
  const dotted = bytes('.dot\r\n');
  const [out] = e.push(dotted);
  assert.equal(out?.toString('latin1'), '..dot\r\n');
  assert.notEqual(out?.buffer, dotted.buffer);
  const d = new DataDecoder({ maxMessageSize: 1e9, bareNewline: 'normalize' });
  const first = d.push(bytes('..a\r\n')).chunks[0];
  d.push(bytes('b\r\n'));
  assert.equal(first?.toString('latin1'), '.a\r\n', 'an earlier output is not overwritten by a later push');
});

test('DotEncoder: split at every position equals one push', () => {
  const input = bytes('.start\r\nx\r.y\n.z\r\n..\r\n.\r\nend\r');
  const whole = encode([input]);
  assert.equal(whole.toString('latin1'), '..start\r\nx\r\n..y\r\n..z\r\n...\r\n..\r\nend\r\n.\r\n');
  for (const pieces of everySplit(input)) assert.deepEqual(encode(pieces), whole);
  assert.deepEqual(encode(bytewise(input)), whole);
});

test('DotEncoder terminators', () => {
  assert.equal(encode([]).toString(), '.\r\n');
  assert.equal(encode([bytes('a')]).toString(), 'a\r\n.\r\n');
  assert.equal(encode([bytes('a\r\n')]).toString(), 'a\r\n.\r\n');
  assert.equal(encode([bytes('a\n')]).toString(), 'a\r\n.\r\n');
  const e = new DotEncoder();
  e.end();
  assert.throws(() => e.push(bytes('x')), ProtocolError);
});

function normalize(pieces: readonly Buffer[], p: BareNewlinePolicy): { out: string; bare: number } {
  const n = new NewlineNormalizer(p);
  const out = pieces.flatMap((piece) => n.push(piece));
  out.push(...n.end());
  return { out: join(out).toString('latin1'), bare: n.bareNewlines };
}

test('NewlineNormalizer: bare CR/LF become CRLF, dots untouched, CR held across chunks', () => {
  assert.deepEqual(normalize([bytes('a\rb\nc\r\n.\r\n\r')], 'normalize'), { out: 'a\r\nb\r\nc\r\n.\r\n\r\n', bare: 3 });
  assert.deepEqual(normalize([bytes('a\r'), bytes('\nb')], 'normalize'), { out: 'a\r\nb', bare: 0 });
  assert.deepEqual(normalize([bytes('ok\r\nx\ny\n')], 'reject'), { out: 'ok\r\nx', bare: 2 });
});

test('NewlineNormalizer: any segmentation equals one push (property)', () => {
  fc.assert(
    fc.property(material, cuts, policy, (input, c, p) => {
      const whole = normalize([input], p);
      assert.deepEqual(normalize(segment(input, c), p), whole);
      if (p === 'normalize') assert.equal(whole.out, input.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'));
    }),
    { numRuns: 500 },
  );
  const input = bytes('a\rb\r\r\nc\n\r');
  for (const pieces of everySplit(input)) assert.deepEqual(normalize(pieces, 'normalize'), normalize([input], 'normalize'));
  assert.deepEqual(normalize(bytewise(input), 'normalize'), normalize([input], 'normalize'));
});

test('bdatCommand', () => {
  assert.equal(bdatCommand(123, true), 'BDAT 123 LAST\r\n');
  assert.equal(bdatCommand(0, false), 'BDAT 0\r\n');
  assert.throws(() => bdatCommand(-1, false), RangeError);
});
