/**
 * @module bounce/original.test
 * The header-section cut and the DSN stream. HeaderSectionCutter is compared with a one-shot
 * reference (indexOf CRLF CRLF) at every two-way split of awkward messages (no body, no final
 * CRLF, a message starting with the empty line, stray CRs), byte by byte, and under fast-check
 * on CR/LF-heavy input with random chunking.
 *
 * streamDsn is checked to yield head, original (or its headers) and tail in order, to stop
 * reading and close the source once the header section is complete, and to pass RET=FULL
 * chunks through unchanged, including an original without a final CRLF.
 *
 * No I/O: sources are in-memory async iterables.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { HeaderSectionCutter, buildDsn, streamDsn } from './index.js';
import type { Dsn } from './index.js';

function cut(chunks: readonly Buffer[]): Buffer {
  const c = new HeaderSectionCutter();
  const out: Uint8Array[] = [];
  for (const chunk of chunks) out.push(...c.push(chunk));
  out.push(...c.finish());
  return Buffer.concat(out);
}

/** The reference: up to and including the CRLF before the first empty line. */
function expected(message: Buffer): Buffer {
  if (message.subarray(0, 2).equals(Buffer.from('\r\n'))) return Buffer.alloc(0);
  const at = message.indexOf('\r\n\r\n');
  return at < 0 ? message : message.subarray(0, at + 2);
}

const MESSAGES = [
  'Subject: a\r\nFrom: b@example.org\r\n\r\nbody\r\n\r\nmore\r\n',
  'Subject: no body\r\n',
  'Subject: no body, no final CRLF',
  '\r\nbody only\r\n',
  '',
  'Subject: a\r\n\tfolded\r\nX: \r\r\n\r\nbody',
  'Subject: stray\r\n\rX: y\r\n\r\n',
  'Subject: ends in CR\r\n\r',
].map((s) => Buffer.from(s, 'latin1'));

test('HeaderSectionCutter: exact at every split point and byte by byte', () => {
  for (const message of MESSAGES) {
    const want = expected(message);
    assert.deepEqual(cut([message]), want, JSON.stringify(message.toString('latin1')));
    for (let i = 0; i <= message.length; i++) {
      for (let j = i; j <= message.length; j++) {
        const got = cut([message.subarray(0, i), message.subarray(i, j), message.subarray(j)]);
        assert.deepEqual(got, want, `split ${i},${j} of ${JSON.stringify(message.toString('latin1'))}`);
      }
    }
    assert.deepEqual(cut([...message].map((b) => Buffer.of(b))), want);
  }
});

test('HeaderSectionCutter: fast-check against the reference on CR/LF-heavy input', () => {
  const bytes = fc.array(fc.constantFrom(0x0d, 0x0a, 0x41, 0x3a, 0x20), { maxLength: 40 }).map((a) => Buffer.from(a));
  fc.assert(
    fc.property(bytes, fc.array(fc.nat(40), { maxLength: 5 }), (message, cuts) => {
      const points = [...new Set(cuts.map((c) => Math.min(c, message.length)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let last = 0;
      for (const p of points) {
        chunks.push(message.subarray(last, p));
        last = p;
      }
      chunks.push(message.subarray(last));
      assert.deepEqual(cut(chunks), expected(message));
    }),
    { numRuns: 2000 },
  );
});

function dsn(ret: 'FULL' | 'HDRS'): Dsn {
  const d = buildDsn({
    reportingMta: 'mta.example.net',
    queueId: 'Q1',
    arrivalDate: 0,
    now: 1000,
    messageIdDomain: 'mta.example.net',
    envelope: { sender: 'a@example.org', smtputf8: false, body: '7BIT', dsnRet: ret },
    recipients: [{ address: 'b@example.com', action: 'failed', status: '5.1.1' }],
  });
  assert.ok(d);
  return d;
}

test('streamDsn: head, header section, tail; the source is closed once the headers are read', async () => {
  let read = 0;
  let closed = false;
  const source: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      const chunks = ['Subject: x\r\n', 'From: y\r\n\r', '\nbody 1\r\n', 'body 2\r\n'].map((s) => Buffer.from(s));
      return {
        next: async () => {
          const value = chunks[read++];
          return value === undefined ? { done: true, value: undefined } : { done: false, value };
        },
        return: async () => {
          closed = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  const d = dsn('HDRS');
  const out: Uint8Array[] = [];
  for await (const piece of streamDsn(d, source)) out.push(piece);
  assert.deepEqual(Buffer.concat(out), Buffer.concat([d.head, Buffer.from('Subject: x\r\nFrom: y\r\n'), d.tail]));
  assert.equal(read, 3, 'stopped reading at the end of the header section');
  assert.ok(closed, 'and closed the source');
});

test('streamDsn: RET=FULL streams every chunk unchanged', async () => {
  const chunks = ['Subject: x\r\n\r\n', '.leading dot\r\n', 'last line without CRLF'].map((s) => Buffer.from(s));
  async function* source(): AsyncGenerator<Uint8Array> {
    yield* chunks;
  }
  const d = dsn('FULL');
  const out: Uint8Array[] = [];
  for await (const piece of streamDsn(d, source())) out.push(piece);
  assert.deepEqual(Buffer.concat(out), Buffer.concat([d.head, ...chunks, d.tail]));
  // The tail's leading CRLF is the delimiter's own, so an original without a final CRLF still closes.
  assert.ok(d.tail.subarray(0, 4).equals(Buffer.from('\r\n--')));
});
