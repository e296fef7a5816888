import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { DEFAULT_MAX_COMMAND_LINE, LineReader, type LineEvent } from './line-reader.js';
import { bytes, bytewise, everySplit, segment } from './testkit.js';

type Seen = { line: string } | { error: string };

function drain(reader: LineReader): Seen[] {
  const seen: Seen[] = [];
  for (let e: LineEvent | undefined = reader.next(); e; e = reader.next()) {
    seen.push(e.kind === 'line' ? { line: e.line.toString('latin1') } : { error: e.code });
  }
  return seen;
}

function read(pieces: readonly Buffer[], max?: number): { events: Seen[]; rest: string } {
  const reader = new LineReader(max === undefined ? {} : { maxLineLength: max });
  const events: Seen[] = [];
  for (const p of pieces) {
    reader.push(p);
    events.push(...drain(reader));
  }
  return { events, rest: reader.takeBuffered().toString('latin1') };
}

test('CRLF lines come out without the CRLF', () => {
  assert.deepEqual(read([bytes('EHLO a\r\nMAIL FROM:<>\r\n\r\npartial')]), {
    events: [{ line: 'EHLO a' }, { line: 'MAIL FROM:<>' }, { line: '' }],
    rest: 'partial',
  });
});

test('bare LF, bare CR and NUL lines are consumed and reported once', () => {
  const { events } = read([bytes('a\nb\r\nc\rd\r\ne\0f\r\n\r\r\n\n\rx\ny\r\n')]);
  assert.deepEqual(events, [
    { error: 'BARE_LF' },
    { line: 'b' },
    { error: 'BARE_CR' },
    { error: 'NUL' },
    { error: 'BARE_CR' },
    { error: 'BARE_LF' },
    { error: 'BARE_LF' },
    { line: 'y' },
  ]);
});

test('CR at the end of one chunk and LF at the start of the next make one CRLF', () => {
  assert.deepEqual(read([bytes('NOOP\r'), bytes('\nQUIT\r\n')]).events, [{ line: 'NOOP' }, { line: 'QUIT' }]);
});

test('line length limit counts the CRLF', () => {
  const ok = 'x'.repeat(DEFAULT_MAX_COMMAND_LINE - 2);
  assert.deepEqual(read([bytes(`${ok}\r\n${ok}x\r\nNOOP\r\n`)]).events, [{ line: ok }, { error: 'LINE_TOO_LONG' }, { line: 'NOOP' }]);
});

test('an over-long line is reported once and memory stays bounded (10 MB, no CRLF)', () => {
  const reader = new LineReader();
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const events: Seen[] = [];
  let peak = 0;
  for (let sent = 0; sent < 10 * 1024 * 1024; sent += chunk.length) {
    reader.push(chunk);
    events.push(...drain(reader));
    peak = Math.max(peak, reader.buffered);
  }
  reader.push(bytes('tail\r\nRSET\r\n'));
  events.push(...drain(reader));
  assert.deepEqual(events, [{ error: 'LINE_TOO_LONG' }, { line: 'RSET' }]);
  assert.ok(peak <= DEFAULT_MAX_COMMAND_LINE + chunk.length, `peak ${peak}`);
});

test('byte-at-a-time over-long line holds at most maxLineLength bytes', () => {
  const reader = new LineReader({ maxLineLength: 16 });
  let peak = 0;
  const events: Seen[] = [];
  for (const b of bytewise(bytes(`${'z'.repeat(5000)}\r\nok\r\n`))) {
    reader.push(b);
    events.push(...drain(reader));
    peak = Math.max(peak, reader.buffered);
  }
  assert.deepEqual(events, [{ error: 'LINE_TOO_LONG' }, { line: 'ok' }]);
  assert.ok(peak <= 16, `peak ${peak}`);
});

test('takeBuffered returns exactly the unread bytes and resets to a line start', () => {
  const reader = new LineReader();
  reader.push(bytes('DATA\r\nSubject: x\r\n.\r\n'));
  assert.deepEqual(drain(reader).slice(0, 1), [{ line: 'DATA' }]);
  const reader2 = new LineReader();
  reader2.push(bytes('DATA\r\nSubject: x\r'));
  assert.equal(reader2.next()?.kind, 'line');
  assert.equal(reader2.buffered, 11);
  assert.equal(reader2.takeBuffered().toString(), 'Subject: x\r');
  assert.equal(reader2.buffered, 0);
  reader2.push(bytes('QUIT\r\n'));
  assert.deepEqual(drain(reader2), [{ line: 'QUIT' }]);
});

const CORPUS = bytes(
  `EHLO client.example\r\nMAIL FROM:<a@b> SIZE=10\r\nbad\nline\r\nx\ry\r\n${'L'.repeat(600)}\r\nn\0l\r\nRCPT TO:<c@d>\r\n\r\n\r\rQUIT\r\nleft`,
);

test('split at every byte position gives the same events as one push', () => {
  const whole = read([CORPUS]);
  assert.equal(whole.events.length, 10);
  for (const pieces of everySplit(CORPUS)) assert.deepEqual(read(pieces), whole);
  assert.deepEqual(read(bytewise(CORPUS)), whole);
});

test('random segmentations and random input: same as one push', () => {
  const piece = fc.oneof(
    fc.constantFrom('\r\n', '\r', '\n', '\0', '.', 'NOOP', 'x'.repeat(40)).map(bytes),
    fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a)),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 30 }), (parts, cuts) => {
      const input = Buffer.concat(parts);
      assert.deepEqual(read(segment(input, cuts), 64), read([input], 64));
    }),
    { numRuns: 500 },
  );
});
