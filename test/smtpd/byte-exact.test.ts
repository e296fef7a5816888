/**
 * Invariant 1, "whole": at least 1,000 generated messages (dot lines of every kind, lines far
 * longer than 998 octets, 8-bit and NUL bytes, CRLF at segment edges), each dot-stuffed by the
 * test and written in a random segmentation down to 1-byte writes. What the queue holds must be
 * exactly the message as generated, after our one Received: header.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RawClient } from '../support/raw-client.js';
import { startTestServer, withoutTraceHeader } from '../support/server.js';

const MESSAGES = 1000;
const CONNECTIONS = 8;
const SEED = Number(process.env['PW_TEST_SEED'] ?? 20261129);

/** A line without CR or LF: dots, long runs, 8-bit, NUL. */
const lineArb = fc.oneof(
  fc.constantFrom('', '.', '..', '...', '. ', '.\t', ' .', 'From: a@b.test', 'Subject: test', '\0', '\x7f\x80\xff'),
  fc.uint8Array({ maxLength: 80 }).map((bytes) => Buffer.from(bytes.filter((b) => b !== 13 && b !== 10)).toString('latin1')),
  fc.tuple(fc.constantFrom('.', 'x', '\xe9'), fc.integer({ min: 999, max: 6000 })).map(([c, n]) => c.repeat(n)),
  fc.string({ maxLength: 60 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')),
);

/** A message: CRLF-terminated lines (so nothing in it is normalised), byte-exact as latin1. */
const messageArb = fc.array(lineArb, { minLength: 0, maxLength: 40 }).map((lines) => Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1'));

/** Segment sizes: mostly tiny (1..8 bytes), sometimes large, so CRLF and dots land on every edge. */
const segmentationArb = fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 9, max: 4096 })), { minLength: 1, maxLength: 64 });

function dotStuff(message: Buffer): Buffer {
  const text = message.toString('latin1');
  return Buffer.from(`${text.replace(/(^|\r\n)\./g, '$1..')}.\r\n`, 'latin1');
}

function segment(bytes: Buffer, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

it(`stores ${MESSAGES} generated messages byte-exact whatever the segmentation (seed ${SEED})`, { timeout: 240_000 }, async () => {
  const messages = fc.sample(messageArb, { numRuns: MESSAGES, seed: SEED });
  const segmentations = fc.sample(segmentationArb, { numRuns: MESSAGES, seed: SEED + 1 });
  const server = await startTestServer();
  try {
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async (_, lane) => {
        const c = await RawClient.connect(server.port);
        assert.equal((await c.reply()).code, 220);
        assert.equal((await c.command('EHLO exact.test')).code, 250);
        for (let i = lane; i < MESSAGES; i += CONNECTIONS) {
          // Envelope and DATA pipelined in one packet; the body in the generated segmentation.
          await c.write(`MAIL FROM:<gen@exact.test>\r\nRCPT TO:<m${i}@dest.test>\r\nDATA\r\n`);
          const [mail, rcpt, data] = await c.replies_(3);
          assert.deepEqual([mail?.code, rcpt?.code, data?.code], [250, 250, 354]);
          await c.writeSegments(segment(dotStuff(messages[i] as Buffer), segmentations[i] ?? [1]));
          const done = await c.reply();
          assert.equal(done.code, 250, `message ${i}: ${done.text}`);
        }
        await c.command('QUIT');
        c.close();
      }),
    );
    const stored = await server.messages();
    assert.equal(stored.length, MESSAGES);
    for (const m of stored) {
      const index = Number(/^m(\d+)@/.exec(m.recipients[0]?.address ?? '')?.[1]);
      const expected = messages[index] as Buffer;
      const actual = withoutTraceHeader(m.body);
      if (!actual.equals(expected)) {
        assert.fail(`message ${index} differs (seed ${SEED}): stored ${actual.length} octets, sent ${expected.length}`);
      }
    }
  } finally {
    await server.stop();
  }
});
