import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { ProtocolError, ReplyReader, formatReply, reply } from './reply.js';
import type { Reply } from './types.js';
import { bytes, bytewise, everySplit, segment } from './testkit.js';

const code = (c: string) => (e: unknown) => e instanceof ProtocolError && e.code === c;

function readAll(pieces: readonly Buffer[], options?: { maxLineLength?: number; maxLines?: number }): Reply[] {
  const reader = new ReplyReader(options);
  return pieces.flatMap((p) => reader.push(p));
}

test('reply() builds values; enhanced omitted when undefined', () => {
  assert.deepEqual(reply(250, '2.1.0', 'Ok'), { code: 250, enhanced: '2.1.0', lines: ['Ok'] });
  assert.deepEqual(reply(220, undefined, 'hi'), { code: 220, lines: ['hi'] });
  assert.equal('enhanced' in reply(354, undefined, 'go'), false);
  assert.deepEqual(reply(250, undefined).lines, ['']);
  assert.throws(() => reply(99, undefined), RangeError);
});

test('formatReply: multi-line, enhanced on every line, CR/LF flattened', () => {
  assert.equal(formatReply(reply(250, undefined, 'a', 'b')), '250-a\r\n250 b\r\n');
  assert.equal(formatReply(reply(250, '2.1.0', 'a', 'b')), '250-2.1.0 a\r\n250 2.1.0 b\r\n');
  assert.equal(formatReply(reply(550, '5.7.1', 'no\r\n250 ok')), '550 5.7.1 no 250 ok\r\n');
  assert.equal(formatReply(reply(250, '2.0.0')), '250 2.0.0\r\n');
  assert.equal(formatReply(reply(354, undefined, '')), '354\r\n');
});

test('ReplyReader: single, multi-line, enhanced codes, CRLF or LF', () => {
  const replies = readAll([bytes('220 mx ESMTP\r\n250-mx\r\n250-SIZE 10\r\n250 8BITMIME\r\n550-5.7.1 no\n550 5.7.1 really\r\n354 go\r\n')]);
  assert.deepEqual(replies, [
    { code: 220, lines: ['mx ESMTP'] },
    { code: 250, lines: ['mx', 'SIZE 10', '8BITMIME'] },
    { code: 550, enhanced: '5.7.1', lines: ['no', 'really'] },
    { code: 354, lines: ['go'] },
  ]);
});

test('ReplyReader: enhanced code only when every line carries it; bare code lines accepted', () => {
  assert.deepEqual(readAll([bytes('250-2.0.0 a\r\n250 b\r\n250\r\n250 2.0.0\r\n')]), [
    { code: 250, lines: ['2.0.0 a', 'b'] },
    { code: 250, lines: [''] },
    { code: 250, enhanced: '2.0.0', lines: [''] },
  ]);
});

test('ReplyReader: syntax errors and limits throw coded ProtocolErrors', () => {
  assert.throws(() => readAll([bytes('hello\r\n')]), code('REPLY_SYNTAX'));
  assert.throws(() => readAll([bytes('25 x\r\n')]), code('REPLY_SYNTAX'));
  assert.throws(() => readAll([bytes('250x\r\n')]), code('REPLY_SYNTAX'));
  assert.throws(() => readAll([bytes('250-a\r\n251 b\r\n')]), code('REPLY_SYNTAX'));
  assert.throws(() => readAll([bytes(`250 ${'x'.repeat(5000)}\r\n`)]), code('REPLY_TOO_LONG'));
  assert.throws(() => readAll(bytewise(bytes(`250 ${'x'.repeat(100)}`)), { maxLineLength: 50 }), code('REPLY_TOO_LONG'));
  assert.throws(() => readAll([bytes('250-a\r\n'.repeat(5))], { maxLines: 5 }), code('REPLY_TOO_MANY_LINES'));
});

test('ReplyReader: every split and bytewise pushes equal one push', () => {
  const corpus = bytes('220 hi\r\n250-a\r\n250-2.0.0 b\r\n250 c\r\n421-4.3.0 x\r\n421 4.3.0 y\r\n250 ü\r\n');
  const whole = readAll([corpus]);
  assert.equal(whole.length, 4);
  for (const pieces of everySplit(corpus)) assert.deepEqual(readAll(pieces), whole);
  assert.deepEqual(readAll(bytewise(corpus)), whole);
});

test('formatReply → ReplyReader round trip in any segmentation (property)', () => {
  const text = fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, '').trim());
  const enhanced = fc.option(fc.tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 999 })));
  const arb = fc.record({
    code: fc.integer({ min: 200, max: 599 }),
    enhanced,
    lines: fc.array(text, { minLength: 1, maxLength: 5 }),
  });
  fc.assert(
    fc.property(fc.array(arb, { maxLength: 5 }), fc.array(fc.nat(), { maxLength: 20 }), (specs, cuts) => {
      const replies = specs.map((s) => {
        const cls = String(s.code)[0] ?? '2';
        const enh = s.enhanced && cls !== '3' ? `${cls}.${s.enhanced[0]}.${s.enhanced[1]}` : undefined;
        // A text that itself starts like an enhanced code would be read as one: not what we test.
        return reply(s.code, enh, ...s.lines.map((l) => (/^\d/.test(l) ? `x${l}` : l)));
      });
      const wire = Buffer.from(replies.map(formatReply).join(''), 'utf8');
      assert.deepEqual(readAll(segment(wire, cuts)), replies);
    }),
    { numRuns: 300 },
  );
});
