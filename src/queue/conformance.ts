/**
 * @module queue/conformance
 * The QueueStore conformance suite: every backend runs it (STYLE practice 6), so "durable",
 * "byte-exact", "arrival order" and the error codes mean the same thing on each.
 *
 * Usage, from a backend's test file: runStoreConformance('sqlite', factory, { skip }). The factory
 * makes a fresh, empty store per test and returns `reopen` (close the store most recently
 * returned, if still open, and open a new one over the same data: a restart) and `cleanup`
 * (close whatever is open and remove the data). A backend that cannot pass a test lists it in
 * `skip` with a written reason; the reason shows in the test report.
 *
 * It trusts only the QueueStore interface. Sizes straddle the default inline bound of the
 * embedded store (100 KiB and 300 KiB around 128 KiB) because boundaries are where backends
 * differ, and a 5 MiB body is written in 64 KiB chunks to prove streaming in both directions.
 * Not exported from queue/index.ts: it imports node:test.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Envelope, QueueStore, StoredMessage } from './store.js';
import { QueueError } from './store.js';
import type { QueueErrorCode } from './store.js';
import type { QueueId } from './ids.js';
import { newQueueId } from './ids.js';

export interface StoreHarness {
  readonly store: QueueStore;
  readonly reopen: () => Promise<QueueStore>;
  readonly cleanup: () => Promise<void>;
}

export interface ConformanceOptions {
  readonly skip?: ReadonlyArray<{ readonly test: string; readonly reason: string }>;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

/** A plain envelope; tests override what they exercise. */
export function sampleEnvelope(overrides: Partial<Envelope> = {}): Envelope {
  return {
    sender: 'alice@example.org',
    recipients: [{ address: 'bob@example.net' }],
    body: '8BITMIME',
    smtputf8: false,
    client: { ip: '192.0.2.1', helo: 'mx.example.org', protocol: 'ESMTPS' },
    ...overrides,
  };
}

/** Deterministic bytes of any length (every byte value occurs), distinct per seed. */
export function patternBytes(size: number, seed = 0): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export async function writeAndCommit(store: QueueStore, body: Uint8Array, envelope = sampleEnvelope(), chunk = CHUNK): Promise<StoredMessage> {
  const writer = store.createMessage();
  for (let at = 0; at < body.byteLength; at += chunk) await writer.write(body.subarray(at, at + chunk));
  return writer.commit(envelope);
}

export async function readAll(store: QueueStore, id: QueueId): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of store.readBody(id)) parts.push(chunk);
  return Buffer.concat(parts);
}

/** Compare by digest so a 5 MiB mismatch does not print 5 MiB. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.byteLength, expected.byteLength, `${what}: length`);
  const digest = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
  assert.equal(digest(actual), digest(expected), `${what}: bytes differ`);
}

async function rejectsWith(work: () => unknown, code: QueueErrorCode): Promise<void> {
  await assert.rejects(
    async () => {
      await work();
    },
    (err: unknown) => err instanceof QueueError && err.code === code,
    `expected ${code}`,
  );
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function runStoreConformance(name: string, factory: () => Promise<StoreHarness>, options: ConformanceOptions = {}): void {
  /** Each test gets a fresh store, and `h.current` follows reopen(). */
  const test = (title: string, body: (h: { current: QueueStore; reopen: () => Promise<QueueStore> }) => Promise<void>): void => {
    const skipped = options.skip?.find((s) => s.test === title);
    it(title, skipped ? { skip: skipped.reason } : {}, async () => {
      const harness = await factory();
      const state = {
        current: harness.store,
        reopen: async () => {
          state.current = await harness.reopen();
          return state.current;
        },
      };
      try {
        await body(state);
      } finally {
        await harness.cleanup();
      }
    });
  };

  describe(`QueueStore conformance: ${name}`, () => {
    const sizes: ReadonlyArray<[string, number]> = [
      ['0 bytes', 0], ['1 byte', 1], ['10 KiB', 10 * KiB], ['100 KiB', 100 * KiB], ['300 KiB', 300 * KiB], ['5 MiB', 5 * MiB],
    ];
    for (const [label, size] of sizes) {
      test(`round-trips a ${label} body byte-exact`, async (h) => {
        const body = patternBytes(size, size);
        const stored = await writeAndCommit(h.current, body);
        assert.equal(stored.size, size);
        const got = await h.current.getMessage(stored.id);
        assert.ok(got, 'getMessage finds the committed message');
        assert.equal(got.size, size);
        assert.deepEqual(got.envelope, sampleEnvelope());
        assert.deepEqual(got.recipients, [{ address: 'bob@example.net', state: 'queued' }]);
        assert.deepEqual((await h.current.listMessages()).map((m) => m.id), [stored.id]);
        assert.deepEqual(await h.current.countByState(), { queued: 1 });
        assertSameBytes(await readAll(h.current, stored.id), body, label);
      });
    }

    test('streams bodies in bounded chunks', async (h) => {
      const stored = await writeAndCommit(h.current, patternBytes(MiB, 7));
      for await (const chunk of h.current.readBody(stored.id)) assert.ok(chunk.byteLength <= 256 * KiB, 'chunk too large');
    });

    test('writer reports its id and size while writing', async (h) => {
      const writer = h.current.createMessage();
      await writer.write(patternBytes(1000));
      await writer.write(patternBytes(200 * KiB));
      assert.equal(writer.size, 1000 + 200 * KiB);
      const stored = await writer.commit(sampleEnvelope());
      assert.equal(stored.id, writer.id);
      assert.equal(stored.size, writer.size);
    });

    test('abort leaves nothing behind', async (h) => {
      const kept = await writeAndCommit(h.current, patternBytes(10));
      for (const size of [0, 5 * KiB, 300 * KiB]) {
        const writer = h.current.createMessage();
        await writer.write(patternBytes(size));
        await writer.abort();
        await writer.abort(); // idempotent
        assert.equal(await h.current.getMessage(writer.id), undefined);
        await rejectsWith(() => writer.write(patternBytes(1)), 'QUEUE_WRITER_DONE');
        await rejectsWith(() => writer.commit(sampleEnvelope()), 'QUEUE_WRITER_DONE');
      }
      const ids = (s: QueueStore): Promise<QueueId[]> => s.listMessages().then((l) => l.map((m) => m.id));
      assert.deepEqual(await ids(h.current), [kept.id]);
      assert.deepEqual(await ids(await h.reopen()), [kept.id]);
    });

    test('lists in arrival order and pages with after/limit', async (h) => {
      const committed: QueueId[] = [];
      for (let i = 0; i < 7; i++) {
        committed.push((await writeAndCommit(h.current, patternBytes(i * 100, i))).id);
        await sleep(3); // ids carry milliseconds: a gap makes arrival order observable
      }
      assert.deepEqual([...committed].sort(), committed, 'ids sort by arrival');
      assert.deepEqual((await h.current.listMessages()).map((m) => m.id), committed);
      const paged: QueueId[] = [];
      let after: QueueId | undefined;
      for (;;) {
        const page = await h.current.listMessages(after === undefined ? { limit: 3 } : { limit: 3, after });
        assert.ok(page.length <= 3);
        if (page.length === 0) break;
        paged.push(...page.map((m) => m.id));
        after = page[page.length - 1]?.id;
      }
      assert.deepEqual(paged, committed);
      assert.deepEqual(await h.current.listMessages({ limit: 0 }), []);
    });

    test('lists and counts by recipient state', async (h) => {
      const one = await writeAndCommit(h.current, patternBytes(10), sampleEnvelope({
        recipients: [{ address: 'a@example.net' }, { address: 'b@example.net' }, { address: 'c@example.com' }],
      }));
      await writeAndCommit(h.current, patternBytes(10));
      assert.deepEqual(await h.current.countByState(), { queued: 4 });
      const queued = await h.current.listMessages({ state: 'queued', limit: 1 });
      assert.deepEqual(queued.map((m) => m.id), [one.id]);
      assert.equal(queued[0]?.recipients.length, 3);
      assert.deepEqual(await h.current.listMessages({ state: 'delivered' }), []);
    });

    test('keeps every envelope field', async (h) => {
      const envelopes: Envelope[] = [
        sampleEnvelope({ sender: '', dsnRet: 'HDRS', dsnEnvid: 'QQ314159', body: 'BINARYMIME', smtputf8: true }),
        sampleEnvelope({
          sender: 'rené@bücher.example',
          smtputf8: true,
          body: '7BIT',
          dsnRet: 'FULL',
          recipients: [
            { address: 'never@example.net', notify: 'NEVER' },
            { address: 'list@example.net', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;orig@example.net' },
            { address: 'utf8@例え.jp', notify: ['FAILURE'], orcpt: 'utf-8;utf8@\\x{4F8B}.jp' },
            { address: 'plain@example.net' },
          ],
        }),
      ];
      const ids: QueueId[] = [];
      for (const envelope of envelopes) ids.push((await writeAndCommit(h.current, patternBytes(3), envelope)).id);
      const check = async (store: QueueStore): Promise<void> => {
        for (const [i, envelope] of envelopes.entries()) {
          const got = await store.getMessage(ids[i] as QueueId);
          assert.deepEqual(got?.envelope, envelope);
          assert.deepEqual(got?.recipients, envelope.recipients.map((r) => ({ ...r, state: 'queued' })));
        }
      };
      await check(h.current);
      await check(await h.reopen());
    });

    test('reopen keeps every committed message byte-exact', async (h) => {
      const bodies = [0, 1, 777, 10 * KiB, 100 * KiB, 300 * KiB, 2 * MiB].map((size, i) => patternBytes(size, i + 100));
      const stored: StoredMessage[] = [];
      for (const body of bodies) stored.push(await writeAndCommit(h.current, body));
      const again = await h.reopen();
      assert.equal((await again.listMessages()).length, bodies.length);
      for (const [i, body] of bodies.entries()) {
        const s = stored[i] as StoredMessage;
        assert.deepEqual(await again.getMessage(s.id), s);
        assertSameBytes(await readAll(again, s.id), body, `message ${i}`);
      }
    });

    test('300 concurrent commits all resolve and survive reopen', async (h) => {
      const count = 300;
      const sizeOf = (i: number): number => (i % 10 === 0 ? 150 * KiB : (i * 37) % 4000);
      const results = await Promise.all(
        Array.from({ length: count }, (_, i) => writeAndCommit(h.current, patternBytes(sizeOf(i), i), sampleEnvelope(), 1500)),
      );
      assert.equal(new Set(results.map((r) => r.id)).size, count);
      const again = await h.reopen();
      const listed = await again.listMessages({ limit: 1000 });
      assert.equal(listed.length, count);
      assert.deepEqual(await again.countByState(), { queued: count });
      for (const [i, r] of results.entries()) {
        assertSameBytes(await readAll(again, r.id), patternBytes(sizeOf(i), i), `message ${i}`);
      }
    });

    test('a finished writer rejects QUEUE_WRITER_DONE', async (h) => {
      const writer = h.current.createMessage();
      await writer.write(patternBytes(10));
      await writer.commit(sampleEnvelope());
      await rejectsWith(() => writer.write(patternBytes(1)), 'QUEUE_WRITER_DONE');
      await rejectsWith(() => writer.commit(sampleEnvelope()), 'QUEUE_WRITER_DONE');
      await writer.abort(); // a no-op after commit, and never rejects
      assert.ok(await h.current.getMessage(writer.id), 'abort after commit does not undo it');
    });

    test('unknown ids are undefined or QUEUE_NOT_FOUND', async (h) => {
      const unknown = newQueueId(Date.now());
      assert.equal(await h.current.getMessage(unknown), undefined);
      await rejectsWith(() => readAll(h.current, unknown), 'QUEUE_NOT_FOUND');
      assert.equal(await h.current.purge(unknown), false);
    });

    test('purge removes the message and its body for good', async (h) => {
      const small = await writeAndCommit(h.current, patternBytes(100));
      const large = await writeAndCommit(h.current, patternBytes(300 * KiB));
      const kept = await writeAndCommit(h.current, patternBytes(200));
      assert.equal(await h.current.purge(small.id), true);
      assert.equal(await h.current.purge(large.id), true);
      assert.equal(await h.current.purge(large.id), false);
      for (const id of [small.id, large.id]) {
        assert.equal(await h.current.getMessage(id), undefined);
        await rejectsWith(() => readAll(h.current, id), 'QUEUE_NOT_FOUND');
      }
      assert.deepEqual(await h.current.countByState(), { queued: 1 });
      const again = await h.reopen();
      assert.deepEqual((await again.listMessages()).map((m) => m.id), [kept.id]);
      assertSameBytes(await readAll(again, kept.id), patternBytes(200), 'kept');
    });

    test('after close every operation rejects QUEUE_CLOSED', async (h) => {
      const stored = await writeAndCommit(h.current, patternBytes(10));
      const open = h.current.createMessage();
      await open.write(patternBytes(10));
      await h.current.close();
      await h.current.close(); // idempotent
      const store = h.current;
      await rejectsWith(() => store.getMessage(stored.id), 'QUEUE_CLOSED');
      await rejectsWith(() => store.listMessages(), 'QUEUE_CLOSED');
      await rejectsWith(() => store.countByState(), 'QUEUE_CLOSED');
      await rejectsWith(() => readAll(store, stored.id), 'QUEUE_CLOSED');
      await rejectsWith(() => store.purge(stored.id), 'QUEUE_CLOSED');
      await rejectsWith(() => open.commit(sampleEnvelope()), 'QUEUE_CLOSED');
      // createMessage may throw at once or hand back a writer that rejects: both say QUEUE_CLOSED.
      await rejectsWith(async () => {
        const late = store.createMessage();
        await late.write(patternBytes(1));
        await late.commit(sampleEnvelope());
      }, 'QUEUE_CLOSED');
      const again = await h.reopen();
      assert.deepEqual((await again.listMessages()).map((m) => m.id), [stored.id], 'the open writer was aborted');
    });

    test('close waits for commits already submitted', async (h) => {
      const pending = Array.from({ length: 20 }, (_, i) => writeAndCommit(h.current, patternBytes(i * 10, i)));
      // Let the writes land so the commits are submitted, then close while they are flushing.
      await sleep(0);
      const closing = h.current.close();
      const settled = await Promise.allSettled(pending);
      await closing;
      const committed = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.id] : []));
      for (const s of settled) {
        if (s.status === 'rejected') assert.ok(s.reason instanceof QueueError && s.reason.code === 'QUEUE_CLOSED');
      }
      const again = await h.reopen();
      assert.deepEqual((await again.listMessages()).map((m) => m.id), [...committed].sort());
    });
  });
}
