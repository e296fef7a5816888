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
 *
 * Scheduling (claims, leases, attempts, history, hold/release) is tested with explicit `now`
 * values an hour past the wall clock, so every message committed during a test is due; hold and
 * release use the store's own clock, which the tests only compare against. What is NOT here,
 * because backends differ on purpose: what reopen does to live leases (the embedded store clears
 * them; a shared one keeps them until they expire), and what becomes of a window mark
 * (markInWindow) that no recordAttempt cleared (each backend tests its own recovery of those).
 * Reopen is tested on recorded state only. The operator tools (searchMessages, retryNow,
 * operatorDelete, operatorBounce) have their own describe block.
 * Not exported from queue/index.ts: it imports node:test.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { AttemptRecord, AttemptState, ClaimedMessage, Envelope, Lease, QueueStore, SearchQuery, StoredMessage } from './store.js';
import { QueueError, RETRY_REPLY } from './store.js';
import type { QueueErrorCode } from './store.js';
import type { QueueId } from './ids.js';
import { newQueueId } from './ids.js';
import { readMessage } from './prepend.js';

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

/** A fresh store per test; `current` follows reopen(). */
interface TestState {
  current: QueueStore;
  reopen: () => Promise<QueueStore>;
}
type StoreTest = (title: string, body: (h: TestState) => Promise<void>) => void;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const LEASE_MS = 10 * MINUTE;

/** A `now` an hour past the wall clock: everything committed so far is due by then. */
const later = (): number => Date.now() + HOUR;

function claim(store: QueueStore, now: number, owner = 'node-a', limit = 100, leaseMs = LEASE_MS): Promise<ClaimedMessage[]> {
  return store.claimDue({ now, limit, leaseMs, owner });
}

const claimedIds = (claimed: readonly ClaimedMessage[]): QueueId[] => claimed.map((c) => c.message.id);

function leaseOf(claimed: readonly ClaimedMessage[], id: QueueId): Lease {
  const found = claimed.find((c) => c.message.id === id);
  assert.ok(found, `message ${id} was claimed`);
  return found.lease;
}

/** One claimed message, or fail. */
async function claimOne(store: QueueStore, now: number, owner = 'node-a'): Promise<ClaimedMessage> {
  const [first, ...rest] = await claim(store, now, owner, 1);
  assert.ok(first, 'a message was due');
  assert.equal(rest.length, 0);
  return first;
}

/** An attempt with one result per listed state, recipient i getting states[i]. */
function attempt(at: number, states: readonly AttemptState[], extra: Partial<AttemptRecord> = {}): AttemptRecord {
  return {
    at,
    nextHop: 'mx1.example.net[192.0.2.25]:25',
    results: states.map((state, recipient) => ({ recipient, state, reply: `${state} reply for ${recipient}` })),
    ...extra,
  };
}

function recipientsEnvelope(count: number): Envelope {
  return sampleEnvelope({ recipients: Array.from({ length: count }, (_, i) => ({ address: `r${i}@example.net` })) });
}

async function statesOf(store: QueueStore, id: QueueId): Promise<string[]> {
  const message = await store.getMessage(id);
  assert.ok(message, `message ${id} exists`);
  return message.recipients.map((r) => r.state);
}

async function commitMany(store: QueueStore, count: number, envelope = sampleEnvelope()): Promise<QueueId[]> {
  const ids: QueueId[] = [];
  for (let i = 0; i < count; i++) ids.push((await writeAndCommit(store, patternBytes(20, i), envelope)).id);
  return ids;
}

export function runStoreConformance(name: string, factory: () => Promise<StoreHarness>, options: ConformanceOptions = {}): void {
  /** Each test gets a fresh store, and `h.current` follows reopen(). */
  const test: StoreTest = (title, body) => {
    const skipped = options.skip?.find((s) => s.test === title);
    it(title, skipped ? { skip: skipped.reason } : {}, async () => {
      const harness = await factory();
      const state: TestState = {
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

    test('keeps envelope.prepend apart from the body and counts it in size', async (h) => {
      // A DKIM-Signature as cleanup makes one: folded, CRLF-terminated, sent before the body.
      const prepend = 'DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org;\r\n s=sel; t=1795953600; h=From:To:Subject;\r\n bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=c2lnbmF0dXJl\r\n';
      const body = patternBytes(300 * KiB, 5);
      const envelope = sampleEnvelope({ prepend });
      const stored = await writeAndCommit(h.current, body, envelope);
      const whole = body.length + Buffer.byteLength(prepend);
      assert.equal(stored.size, whole, 'the committed size counts the prepended fields');
      const check = async (store: QueueStore): Promise<void> => {
        const got = await store.getMessage(stored.id);
        assert.ok(got);
        assert.deepEqual(got.envelope, envelope);
        assert.equal(got.size, whole);
        assert.deepEqual((await store.listMessages()).map((m) => m.size), [whole]);
        assertSameBytes(await readAll(store, stored.id), body, 'readBody: the stored body alone');
        const parts: Buffer[] = [];
        for await (const chunk of readMessage(store, got)) parts.push(Buffer.from(chunk));
        assertSameBytes(Buffer.concat(parts), Buffer.concat([Buffer.from(prepend), body]), 'readMessage: prepend, then the body');
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
      const { lease } = await claimOne(h.current, later());
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
      await rejectsWith(() => claim(store, later()), 'QUEUE_CLOSED');
      await rejectsWith(() => store.renewLease(lease, later()), 'QUEUE_CLOSED');
      await rejectsWith(() => store.recordAttempt(lease, attempt(later(), ['delivered'])), 'QUEUE_CLOSED');
      await rejectsWith(() => store.releaseLease(lease), 'QUEUE_CLOSED');
      await rejectsWith(() => store.history(stored.id), 'QUEUE_CLOSED');
      await rejectsWith(() => store.hold(stored.id, 'closed'), 'QUEUE_CLOSED');
      await rejectsWith(() => store.release(stored.id), 'QUEUE_CLOSED');
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

  describe(`QueueStore conformance: ${name}: scheduling`, () => {
    schedulingSuite(test);
  });

  describe(`QueueStore conformance: ${name}: operator tools`, () => {
    operatorToolsSuite(test);
  });

  describe(`QueueStore conformance: ${name}: admin aggregates`, () => {
    adminAggregateTests(test);
  });
}

/** domainStats: the admin overview's one aggregate read. */
function adminAggregateTests(test: StoreTest): void {
  test('domainStats reports per domain: states, oldest pending, last error, recent deliveries', async (h) => {
    assert.deepEqual(await h.current.domainStats({ deliveredSince: 0 }), []);
    const a = await writeAndCommit(h.current, patternBytes(10), sampleEnvelope({
      recipients: [{ address: 'a@Example.NET' }, { address: 'b@example.net' }, { address: 'c@other.test' }, { address: '"x@y"@Quoted.Test' }],
    }));
    const b = await writeAndCommit(h.current, patternBytes(10), sampleEnvelope({ recipients: [{ address: 'd@example.net' }] }));
    const t0 = later();
    // Recorded a minute ago, so the operator steps below (stamped by the store's clock) are newer.
    const t1 = Date.now() - MINUTE;
    const claimed = await claim(h.current, t0);
    await h.current.recordAttempt(leaseOf(claimed, a.id), {
      at: t1,
      nextHop: 'mx.example.net[192.0.2.25]:25',
      results: [
        { recipient: 0, state: 'delivered', reply: '250 2.0.0 ok' },
        { recipient: 1, state: 'deferred', reply: '451 4.7.1 first' },
        { recipient: 2, state: 'bounced', reply: '550 5.1.1 no such user' },
      ],
      nextAttemptAt: t1 + MINUTE,
    });
    // Operator steps are not errors: a release or a retry records 'deferred' with its own reply.
    assert.equal(await h.current.hold(b.id, 'operator says wait'), true);
    assert.equal(await h.current.release(b.id), true);
    assert.equal(await h.current.hold(b.id, 'operator says wait again'), true);
    assert.equal(await h.current.retryNow(a.id), true);
    assert.deepEqual(await h.current.domainStats({ deliveredSince: t1 }), [
      { domain: 'example.net', states: { delivered: 1, deferred: 1, held: 1 }, oldestPendingAt: a.receivedAt, lastError: { at: t1, reply: '451 4.7.1 first' }, delivered: 1 },
      { domain: 'other.test', states: { bounced: 1 }, lastError: { at: t1, reply: '550 5.1.1 no such user' }, delivered: 0 },
      { domain: 'quoted.test', states: { queued: 1 }, oldestPendingAt: a.receivedAt, delivered: 0 },
    ]);
    // A later error replaces the last one; deliveries before `deliveredSince` are not counted.
    const retry = await claim(h.current, t0 + 2 * MINUTE);
    await h.current.recordAttempt(leaseOf(retry, a.id), {
      at: t0 + 2 * MINUTE, nextHop: '', results: [{ recipient: 1, state: 'deferred', reply: '421 4.4.2 second' }], nextAttemptAt: t0 + 3 * MINUTE,
    });
    const [net] = await h.current.domainStats({ deliveredSince: t1 + 1 });
    assert.deepEqual(net?.lastError, { at: t0 + 2 * MINUTE, reply: '421 4.4.2 second' });
    assert.equal(net?.delivered, 0);
    await rejectsWith(() => h.current.domainStats({ deliveredSince: Number.NaN }), 'QUEUE_INVALID');
  });
}

/** Claims, leases, attempts, history, hold/release: the contract qmgr and admin rely on. */
function schedulingSuite(test: StoreTest): void {
  claimAndLeaseTests(test);
  attemptTests(test);
  operatorTests(test);
  fairnessAndConcurrencyTests(test);
  windowTests(test);
}

/**
 * searchMessages, retryNow, operatorDelete, operatorBounce: what the admin API and `postwire
 * queue` rely on, on every backend.
 */
function operatorToolsSuite(test: StoreTest): void {
  const env = (sender: string, ...recipients: string[]): Envelope => sampleEnvelope({ sender, recipients: recipients.map((address) => ({ address })) });
  const ids = (page: { messages: readonly StoredMessage[] }): QueueId[] => page.messages.map((m) => m.id);

  test('searchMessages: each filter narrows, and they combine with AND', async (h) => {
    const s = h.current;
    const a = (await writeAndCommit(s, patternBytes(10), env('Alice@Example.org', 'bob@example.net', 'carol@Other.example'))).id;
    const b = (await writeAndCommit(s, patternBytes(20), env('', 'dave@sub.example.net'))).id;
    const c = (await writeAndCommit(s, patternBytes(30), env('mallory@spam.test', 'ÉRIC@example.net'))).id;
    assert.deepEqual(ids(await s.searchMessages({})), [a, b, c], 'no filter: everything, oldest first');
    assert.deepEqual(ids(await s.searchMessages({ domain: 'EXAMPLE.NET' })), [a, c], 'domain: exact and case-insensitive, not a suffix');
    assert.deepEqual(ids(await s.searchMessages({ domain: 'other.example' })), [a]);
    assert.deepEqual(ids(await s.searchMessages({ domain: 'sub.example.net.' })), [b], 'a trailing dot is ignored');
    assert.deepEqual(ids(await s.searchMessages({ sender: 'alice@example' })), [a], 'sender: case-insensitive substring');
    assert.deepEqual(ids(await s.searchMessages({ recipient: 'DAVE' })), [b]);
    assert.deepEqual(ids(await s.searchMessages({ recipient: 'éric@' })), [c], 'Unicode case folding');
    assert.deepEqual(ids(await s.searchMessages({ recipient: 'example.net', sender: 'mallory' })), [c], 'AND');
    const cAt = (await s.getMessage(c))?.receivedAt ?? 0;
    assert.deepEqual(ids(await s.searchMessages({ receivedBefore: cAt + 1 })), [a, b, c]);
    assert.deepEqual(ids(await s.searchMessages({ receivedBefore: (await s.getMessage(a))?.receivedAt ?? 0 })), [], 'strictly before');
    assert.deepEqual(ids(await s.searchMessages({ state: 'queued' })), [a, b, c]);
    assert.deepEqual(ids(await s.searchMessages({ state: 'deferred' })), []);

    // States and replies come from attempts: a deferred with one reply, then a hold whose reason is not a reply.
    const t0 = later();
    const claimedAll = await claim(s, t0);
    await s.recordAttempt(leaseOf(claimedAll, a), {
      at: t0, nextHop: 'mx', nextAttemptAt: t0 + HOUR,
      results: [{ recipient: 0, state: 'deferred', reply: '451 4.7.1 Greylisted, come back later' }, { recipient: 1, state: 'delivered', reply: '250 ok' }],
    });
    for (const other of [b, c]) await s.releaseLease(leaseOf(claimedAll, other));
    assert.deepEqual(ids(await s.searchMessages({ state: 'deferred' })), [a]);
    assert.deepEqual(ids(await s.searchMessages({ state: 'delivered' })), [a]);
    assert.deepEqual(ids(await s.searchMessages({ reply: 'greylisted' })), [a], 'reply: the last reply, case-insensitive');
    assert.equal(await s.hold(a, 'greylisting storm: hold for now'), true);
    assert.deepEqual(ids(await s.searchMessages({ reply: 'storm' })), [], 'an operator step is not a reply');
    assert.deepEqual(ids(await s.searchMessages({ reply: 'greylisted' })), [a], 'the last reply survives the hold');
    const second = (await claim(s, t0 + 2 * HOUR)).find((x) => x.message.id === a);
    assert.equal(second, undefined, 'held: not claimed');
    assert.equal(await s.release(a), true);
    const third = leaseOf(await claim(s, t0 + 2 * HOUR), a);
    await s.recordAttempt(third, { at: t0 + 2 * HOUR, nextHop: 'mx', nextAttemptAt: t0 + 3 * HOUR, results: [{ recipient: 0, state: 'deferred', reply: '421 4.4.2 connection timed out' }] });
    assert.deepEqual(ids(await s.searchMessages({ reply: 'greylisted' })), [], 'only the newest reply counts');
    assert.deepEqual(ids(await s.searchMessages({ reply: 'TIMED OUT', state: 'deferred', domain: 'example.net' })), [a]);
    assert.deepEqual(ids(await s.searchMessages({ reply: '250 ok' })), [a], 'any recipient\'s last reply');
  });

  test('searchMessages: sorted, paged by cursor without repeats or gaps, bad cursors refused', async (h) => {
    const s = h.current;
    const sizes = [50, 10, 40, 10, 30];
    const made: QueueId[] = [];
    for (const [i, size] of sizes.entries()) made.push((await writeAndCommit(s, patternBytes(size, i))).id);
    const walk = async (query: SearchQuery): Promise<QueueId[]> => {
      const out: QueueId[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 10; pages++) {
        const page = await s.searchMessages({ ...query, limit: 2, ...(cursor === undefined ? {} : { cursor }) });
        assert.ok(page.messages.length <= 2);
        out.push(...ids(page));
        if (page.next === undefined) return out;
        cursor = page.next;
      }
      assert.fail('paging did not end');
    };
    assert.deepEqual(await walk({}), made, 'received: oldest first');
    const bySize = [...made.keys()].sort((x, y) => (sizes[x] ?? 0) - (sizes[y] ?? 0) || x - y).map((i) => made[i]);
    assert.deepEqual(await walk({ sort: 'size' }), bySize, 'size: smallest first, ties by arrival');
    // Next attempt: the newest message retried soonest, one finished (none: last).
    const t0 = later();
    const claimed = await claim(s, t0);
    for (const [i, id] of made.entries()) {
      const state: AttemptState = i === 0 ? 'delivered' : 'deferred';
      await s.recordAttempt(leaseOf(claimed, id), attempt(t0, [state], state === 'deferred' ? { nextAttemptAt: t0 + (10 - i) * MINUTE } : {}));
    }
    assert.deepEqual(await walk({ sort: 'next-attempt' }), [made[4], made[3], made[2], made[1], made[0]]);
    assert.deepEqual(await walk({ sort: 'next-attempt', state: 'deferred' }), [made[4], made[3], made[2], made[1]], 'filters and sort together');
    const cursor = (await s.searchMessages({ limit: 1 })).next;
    assert.ok(cursor !== undefined);
    await rejectsWith(() => s.searchMessages({ cursor, sort: 'size' }), 'QUEUE_INVALID');
    await rejectsWith(() => s.searchMessages({ cursor: 'not-a-cursor' }), 'QUEUE_INVALID');
    await rejectsWith(() => s.searchMessages({ receivedBefore: Number.NaN }), 'QUEUE_INVALID');
    assert.equal((await s.searchMessages({ limit: 100_000 })).messages.length, 5, 'a large limit is capped, not refused');
    assert.equal((await s.searchMessages({ limit: 5 })).next, undefined, 'an exact fit has no next page');
  });

  test('retryNow makes deferred and ambiguous recipients due at once, in the history', async (h) => {
    const s = h.current;
    const stored = await writeAndCommit(s, patternBytes(10), recipientsEnvelope(4));
    const t0 = later();
    const { lease } = await claimOne(s, t0);
    assert.equal(await s.retryNow(stored.id), false, 'a delivery in flight: nothing to do');
    await s.recordAttempt(lease, attempt(t0, ['deferred', 'ambiguous', 'delivered', 'held'], { nextAttemptAt: t0 + HOUR }));
    assert.deepEqual(await claim(s, Date.now() + 1000), [], 'not due before the retry');
    const before = Date.now();
    assert.equal(await s.retryNow(stored.id), true);
    const after = await s.getMessage(stored.id);
    assert.deepEqual(after?.recipients.map((r) => r.state), ['deferred', 'ambiguous', 'delivered', 'held'], 'states unchanged');
    assert.ok(after?.nextAttemptAt !== undefined && after.nextAttemptAt >= before && after.nextAttemptAt <= Date.now());
    assert.equal(after?.attempts, 1, 'not an attempt');
    const entry = (await s.history(stored.id))[1];
    assert.deepEqual({ ...entry, at: 0, nextAttemptAt: 0 }, {
      at: 0, nextHop: '', note: 'retry', nextAttemptAt: 0,
      results: [{ recipient: 0, state: 'deferred', reply: RETRY_REPLY }, { recipient: 1, state: 'ambiguous', reply: RETRY_REPLY }],
    });
    assert.deepEqual(claimedIds(await claim(s, Date.now() + 1000)), [stored.id], 'due now');
    const fresh = await writeAndCommit(s, patternBytes(10));
    assert.equal(await s.retryNow(fresh.id), false, 'queued only: already due, nothing recorded');
    assert.deepEqual(await s.history(fresh.id), []);
    assert.equal(await s.retryNow(newQueueId(Date.now())), false, 'unknown id');
  });

  test('operatorDelete makes every non-final recipient deleted, for good, even under a live lease', async (h) => {
    const s = h.current;
    const stored = await writeAndCommit(s, patternBytes(10), recipientsEnvelope(4));
    const t0 = later();
    const first = await claimOne(s, t0);
    await s.recordAttempt(first.lease, attempt(t0, ['delivered', 'deferred', 'held'], { nextAttemptAt: t0 + MINUTE }));
    const { lease } = await claimOne(s, t0 + MINUTE);
    assert.deepEqual(await s.operatorDelete(stored.id, 'customer asked'), [1, 2, 3]);
    const deleted = await s.getMessage(stored.id);
    assert.deepEqual(deleted?.recipients.map((r) => r.state), ['delivered', 'deleted', 'deleted', 'deleted']);
    assert.equal(deleted?.nextAttemptAt, undefined, 'nothing due');
    // The run in flight cannot undo it: states only move forward.
    await s.settleDelivered(lease, [1]);
    await s.recordAttempt(lease, attempt(t0 + MINUTE, ['delivered', 'delivered', 'deferred', 'ambiguous'], { nextAttemptAt: t0 + HOUR }));
    assert.deepEqual(await statesOf(s, stored.id), ['delivered', 'deleted', 'deleted', 'deleted']);
    assert.deepEqual(await claim(s, t0 + 10 * HOUR), []);
    const history = await s.history(stored.id);
    assert.deepEqual({ ...history[1], at: 0 }, {
      at: 0, nextHop: '', note: 'delete',
      results: [1, 2, 3].map((recipient) => ({ recipient, state: 'deleted', reply: 'customer asked' })),
    });
    assert.deepEqual(await s.operatorDelete(stored.id, 'again'), [], 'nothing left');
    assert.equal((await s.history(stored.id)).length, 3, 'and nothing recorded');
    assert.deepEqual(await s.operatorDelete(newQueueId(Date.now()), 'x'), []);
    assert.deepEqual(ids(await s.searchMessages({ state: 'deleted' })), [stored.id]);
    await rejectsWith(() => s.recordAttempt(lease, attempt(t0, ['deleted'])), 'QUEUE_LEASE_LOST');
  });

  test('recordAttempt refuses a deleted result: only an operator deletes', async (h) => {
    const s = h.current;
    await writeAndCommit(s, patternBytes(10));
    const { lease } = await claimOne(s, later());
    await rejectsWith(() => s.recordAttempt(lease, attempt(later(), ['deleted'])), 'QUEUE_INVALID');
  });

  test('operatorBounce bounces the recipients asked for that are not yet final', async (h) => {
    const s = h.current;
    const stored = await writeAndCommit(s, patternBytes(10), recipientsEnvelope(4));
    const t0 = later();
    const first = await claimOne(s, t0);
    await s.recordAttempt(first.lease, attempt(t0, ['delivered', 'deferred', 'deferred'], { nextAttemptAt: t0 + MINUTE }));
    await rejectsWith(() => s.operatorBounce(stored.id, 'x', [4]), 'QUEUE_INVALID');
    await rejectsWith(() => s.operatorBounce(stored.id, 'x', [1, 1]), 'QUEUE_INVALID');
    assert.deepEqual(await s.operatorBounce(stored.id, 'the customer closed the account', [0, 2, 1]), [1, 2], 'the delivered one is skipped');
    const after = await s.getMessage(stored.id);
    assert.deepEqual(after?.recipients.map((r) => r.state), ['delivered', 'bounced', 'bounced', 'queued']);
    assert.equal(after?.nextAttemptAt, t0 + MINUTE, 'the queued one is still due as it was');
    const entry = (await s.history(stored.id))[1];
    assert.deepEqual({ ...entry, at: 0 }, {
      at: 0, nextHop: '', note: 'bounce', nextAttemptAt: t0 + MINUTE,
      results: [1, 2].map((recipient) => ({ recipient, state: 'bounced', reply: 'the customer closed the account' })),
    });
    assert.deepEqual(await s.operatorBounce(stored.id, 'again', [1]), []);
    assert.deepEqual(await s.operatorBounce(stored.id, 'last', [3]), [3]);
    assert.equal((await s.getMessage(stored.id))?.nextAttemptAt, undefined, 'nothing due any more');
    assert.deepEqual(await s.operatorBounce(newQueueId(Date.now()), 'x', []), []);
  });

  test('the operator tools reject QUEUE_CLOSED after close', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10));
    await h.current.close();
    await rejectsWith(() => h.current.searchMessages({}), 'QUEUE_CLOSED');
    await rejectsWith(() => h.current.retryNow(stored.id), 'QUEUE_CLOSED');
    await rejectsWith(() => h.current.operatorDelete(stored.id, 'x'), 'QUEUE_CLOSED');
    await rejectsWith(() => h.current.operatorBounce(stored.id, 'x', [0]), 'QUEUE_CLOSED');
  });
}

function claimAndLeaseTests(test: StoreTest): void {
  test('a committed message is due at once, with no attempts and no history', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10));
    assert.equal(stored.attempts, 0);
    assert.equal(stored.nextAttemptAt, stored.receivedAt);
    assert.deepEqual(await h.current.getMessage(stored.id), stored);
    assert.deepEqual(await h.current.history(stored.id), []);
    assert.deepEqual(await claim(h.current, stored.receivedAt - 1), [], 'not due before it was received');
    const [claimed, ...rest] = await claim(h.current, stored.receivedAt, 'node-a', 10, 1000);
    assert.equal(rest.length, 0);
    assert.ok(claimed);
    assert.equal(claimed.attempts, 0);
    assert.deepEqual(
      { id: claimed.lease.id, owner: claimed.lease.owner, until: claimed.lease.until },
      { id: stored.id, owner: 'node-a', until: stored.receivedAt + 1000 },
    );
    assert.ok(claimed.lease.token.length > 0);
    assert.deepEqual(claimed.message, { ...stored, lease: { owner: 'node-a', until: stored.receivedAt + 1000 } });
    assert.deepEqual((await h.current.getMessage(stored.id))?.lease, { owner: 'node-a', until: stored.receivedAt + 1000 });
    assert.deepEqual(await h.current.history(newQueueId(Date.now())), [], 'an unknown id has no history');
  });

  test('a claim hides the message from other claims until recorded, released or expired', async (h) => {
    const [m1, m2, m3] = await commitMany(h.current, 3);
    const t0 = later();
    const first = await claim(h.current, t0, 'node-a', 2);
    assert.deepEqual(claimedIds(first), [m1, m2], 'oldest first, at most limit');
    assert.deepEqual(claimedIds(await claim(h.current, t0, 'node-b')), [m3]);
    assert.deepEqual(await claim(h.current, t0, 'node-b'), [], 'everything is leased');
    await h.current.releaseLease(leaseOf(first, m1 as QueueId));
    assert.equal((await h.current.getMessage(m1 as QueueId))?.lease, undefined);
    const again = await claim(h.current, t0, 'node-b');
    assert.deepEqual(claimedIds(again), [m1], 'released: due again at once');
    await h.current.recordAttempt(leaseOf(first, m2 as QueueId), attempt(t0, ['deferred'], { nextAttemptAt: t0 + 1000 }));
    assert.deepEqual(claimedIds(await claim(h.current, t0 + 999, 'node-c')), [], 'recorded: due at its next attempt time');
    assert.deepEqual(claimedIds(await claim(h.current, t0 + 1000, 'node-c')), [m2]);
    // m1 and m3 were claimed at t0 by node-b: their leases end at t0 + LEASE_MS (until <= now).
    assert.deepEqual(await claim(h.current, t0 + LEASE_MS - 1, 'node-d'), []);
    assert.deepEqual(claimedIds(await claim(h.current, t0 + LEASE_MS, 'node-d')), [m1, m3]);
  });

  test('a lease released with notBefore makes the message due only then, with no attempt counted', async (h) => {
    const [m1] = await commitMany(h.current, 1);
    const t0 = later();
    const [first] = await claim(h.current, t0, 'node-a');
    assert.ok(first);
    await h.current.releaseLease(first.lease, t0 + 5000);
    assert.deepEqual(claimedIds(await claim(h.current, t0 + 4999, 'node-b')), [], 'not due before notBefore');
    const [later_] = await claim(h.current, t0 + 5000, 'node-b');
    assert.deepEqual(claimedIds(later_ ? [later_] : []), [m1]);
    assert.equal(later_?.attempts, 0);
  });

  test('an expired lease passes to another owner, and the old token is lost', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(2));
    const t0 = later();
    const a = (await claim(h.current, t0, 'node-a', 1, 1000))[0]?.lease;
    assert.ok(a);
    assert.deepEqual(await claim(h.current, t0 + 999, 'node-b'), []);
    const b = (await claim(h.current, t0 + 1000, 'node-b', 1, 1000))[0]?.lease;
    assert.ok(b, 'node-b takes the expired lease');
    assert.notEqual(b.token, a.token);
    await rejectsWith(() => h.current.recordAttempt(a, attempt(t0 + 1001, ['delivered', 'delivered'])), 'QUEUE_LEASE_LOST');
    assert.equal(await h.current.renewLease(a, t0 + 5000), undefined);
    await h.current.releaseLease(a); // a lost lease: a no-op, node-b keeps the message
    assert.deepEqual(await claim(h.current, t0 + 1001, 'node-c'), []);
    assert.deepEqual((await h.current.getMessage(stored.id))?.lease, { owner: 'node-b', until: t0 + 2000 });
    assert.deepEqual(await statesOf(h.current, stored.id), ['queued', 'queued'], 'the lost run wrote nothing');
    assert.deepEqual(await h.current.history(stored.id), []);
    await h.current.recordAttempt(b, attempt(t0 + 1002, ['delivered', 'delivered']));
    assert.deepEqual(await statesOf(h.current, stored.id), ['delivered', 'delivered']);
    assert.equal((await h.current.history(stored.id)).length, 1);
  });

  test('renewLease extends a lease, also one past its time that nobody took', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10));
    const t0 = later();
    const { lease } = await claimOne(h.current, t0);
    const renewed = await h.current.renewLease(lease, t0 + LEASE_MS * 3);
    assert.deepEqual(renewed, { ...lease, until: t0 + LEASE_MS * 3 });
    assert.deepEqual(await claim(h.current, t0 + LEASE_MS * 2, 'node-b'), [], 'the renewed lease holds');
    // Past its time, nobody claimed it: the holder may still renew and record.
    const late = await h.current.renewLease(lease, t0 + LEASE_MS * 5);
    assert.equal(late?.until, t0 + LEASE_MS * 5);
    assert.deepEqual(await claim(h.current, t0 + LEASE_MS * 4, 'node-b'), []);
    await h.current.recordAttempt(lease, attempt(t0 + LEASE_MS * 4, ['delivered']));
    assert.equal(await h.current.renewLease(lease, t0 + LEASE_MS * 6), undefined, 'recorded: the lease is over');
    await rejectsWith(() => h.current.recordAttempt(lease, attempt(t0, ['delivered'])), 'QUEUE_LEASE_LOST');
    assert.equal((await h.current.getMessage(stored.id))?.lease, undefined);
  });

  test('a released lease is over for its holder', async (h) => {
    await writeAndCommit(h.current, patternBytes(10));
    const t0 = later();
    const { lease } = await claimOne(h.current, t0);
    await h.current.releaseLease(lease);
    await h.current.releaseLease(lease); // idempotent
    assert.equal(await h.current.renewLease(lease, t0 + LEASE_MS), undefined);
    await rejectsWith(() => h.current.recordAttempt(lease, attempt(t0, ['delivered'])), 'QUEUE_LEASE_LOST');
    const again = await claimOne(h.current, t0, 'node-b');
    assert.equal(again.attempts, 0, 'releasing is not an attempt');
  });

  test('purge ends the lease and the history', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10));
    const t0 = later();
    const first = await claimOne(h.current, t0);
    await h.current.recordAttempt(first.lease, attempt(t0, ['deferred'], { nextAttemptAt: t0 }));
    const { lease } = await claimOne(h.current, t0);
    assert.equal(await h.current.purge(stored.id), true);
    await rejectsWith(() => h.current.recordAttempt(lease, attempt(t0, ['delivered'])), 'QUEUE_LEASE_LOST');
    assert.equal(await h.current.renewLease(lease, t0 + LEASE_MS), undefined);
    await h.current.releaseLease(lease);
    assert.deepEqual(await h.current.history(stored.id), []);
    assert.deepEqual(await claim(h.current, t0 + HOUR), []);
  });

  test('claimDue checks its query', async (h) => {
    await writeAndCommit(h.current, patternBytes(10));
    const t0 = later();
    assert.deepEqual(await claim(h.current, t0, 'node-a', 0), []);
    await rejectsWith(() => claim(h.current, t0, 'node-a', 1, 0), 'QUEUE_INVALID');
    await rejectsWith(() => claim(h.current, t0, '', 1), 'QUEUE_INVALID');
    await rejectsWith(() => claim(h.current, Number.NaN, 'node-a', 1), 'QUEUE_INVALID');
    assert.equal((await claim(h.current, t0, 'node-a', 1.9)).length, 1, 'a fractional limit rounds down');
  });
}

function attemptTests(test: StoreTest): void {
  test('recordAttempt sets recipient states, counts the attempt and gates the next claim', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(5));
    const t0 = later();
    const first = await claimOne(h.current, t0);
    await h.current.recordAttempt(first.lease, attempt(t0, ['delivered', 'bounced', 'deferred', 'ambiguous', 'held'], { nextAttemptAt: t0 + HOUR }));
    const after = await h.current.getMessage(stored.id);
    assert.deepEqual(after?.recipients.map((r) => r.state), ['delivered', 'bounced', 'deferred', 'ambiguous', 'held']);
    assert.equal(after?.attempts, 1);
    assert.equal(after?.nextAttemptAt, t0 + HOUR);
    assert.equal(after?.lease, undefined);
    assert.deepEqual(await h.current.countByState(), { delivered: 1, bounced: 1, deferred: 1, ambiguous: 1, held: 1 });
    for (const state of ['delivered', 'bounced', 'deferred', 'ambiguous', 'held'] as const) {
      assert.deepEqual((await h.current.listMessages({ state })).map((m) => m.id), [stored.id], state);
    }
    assert.deepEqual(await h.current.listMessages({ state: 'queued' }), []);
    assert.deepEqual(await claim(h.current, t0 + HOUR - 1), [], 'not before nextAttemptAt');
    const second = await claimOne(h.current, t0 + HOUR);
    assert.equal(second.attempts, 1);
    // Final states are sticky: a later 'deferred' for the delivered recipient changes nothing.
    await h.current.recordAttempt(second.lease, {
      at: t0 + HOUR,
      nextHop: '',
      results: [
        { recipient: 0, state: 'deferred', reply: 'stale' },
        { recipient: 2, state: 'delivered', reply: '250 2.0.0 ok' },
        { recipient: 3, state: 'deferred', reply: '421 4.4.2 timeout' },
      ],
      nextAttemptAt: t0 + 2 * HOUR,
    });
    assert.deepEqual(await statesOf(h.current, stored.id), ['delivered', 'bounced', 'delivered', 'deferred', 'held']);
    const third = await claimOne(h.current, t0 + 2 * HOUR);
    assert.equal(third.attempts, 2);
    await h.current.recordAttempt(third.lease, { at: t0 + 2 * HOUR, nextHop: '', results: [{ recipient: 3, state: 'expired', reply: 'too old' }] });
    const done = await h.current.getMessage(stored.id);
    assert.deepEqual(done?.recipients.map((r) => r.state), ['delivered', 'bounced', 'delivered', 'expired', 'held']);
    assert.equal(done?.nextAttemptAt, undefined, 'only a held recipient is left: nothing is due');
    assert.equal(done?.attempts, 3);
    assert.deepEqual(await claim(h.current, t0 + 1000 * HOUR), []);
    assert.deepEqual(await h.current.countByState(), { delivered: 2, bounced: 1, expired: 1, held: 1 });
  });

  test('a message with no due recipients is never claimed again', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(2));
    const other = await writeAndCommit(h.current, patternBytes(10));
    const t0 = later();
    const claimed = await claim(h.current, t0);
    // A nextAttemptAt with nothing left to try is ignored.
    await h.current.recordAttempt(leaseOf(claimed, stored.id), attempt(t0, ['delivered', 'bounced'], { nextAttemptAt: t0 + 1 }));
    await h.current.releaseLease(leaseOf(claimed, other.id));
    assert.equal((await h.current.getMessage(stored.id))?.nextAttemptAt, undefined);
    for (const now of [t0 + 1, t0 + HOUR, t0 + 1000 * HOUR]) {
      assert.deepEqual(claimedIds(await claim(h.current, now, 'node-b', 100, 1)), [other.id], `at ${now - t0} ms`);
    }
    assert.equal(await h.current.hold(stored.id, 'nothing to hold'), false);
    assert.equal(await h.current.release(stored.id), false);
    assert.equal((await h.current.history(stored.id)).length, 1);
  });

  test('history keeps every record verbatim and in order, across reopen', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(3));
    const t0 = later();
    const records: AttemptRecord[] = [
      {
        at: t0,
        nextHop: 'mx1.example.net[192.0.2.25]:25',
        results: [
          { recipient: 2, state: 'deferred', reply: '451-4.7.1 Greylisted, please retry\r\n451 4.7.1 in 5 minutes' },
          { recipient: 0, state: 'delivered', reply: '250 2.0.0 Ok: queued as 4XyZ' },
        ],
        nextAttemptAt: t0 + 5 * MINUTE,
      },
      {
        at: t0 + 5 * MINUTE,
        nextHop: '',
        results: [
          { recipient: 2, state: 'deferred', reply: 'connect to mx1.example.net: ECONNREFUSED' },
          { recipient: 1, state: 'deferred', reply: 'ünïcödé ✉ 例え' },
        ],
        nextAttemptAt: t0 + 20 * MINUTE,
        note: 'no route: both MX hosts refused',
      },
      {
        at: t0 + 20 * MINUTE,
        nextHop: '[2001:db8::25]:25',
        results: [{ recipient: 1, state: 'held', reply: '250 2.0.0 accepted before end of data' }, { recipient: 2, state: 'ambiguous', reply: '' }],
        nextAttemptAt: t0 + HOUR,
        note: 'framing fault: sent 1200 of 4096 bytes, peer replied early',
      },
    ];
    for (const record of records) {
      const { lease } = await claimOne(h.current, record.at);
      await h.current.recordAttempt(lease, record);
    }
    assert.deepEqual(await h.current.history(stored.id), records);
    const again = await h.reopen();
    assert.deepEqual(await again.history(stored.id), records);
    const message = await again.getMessage(stored.id);
    assert.deepEqual(message?.recipients.map((r) => r.state), ['delivered', 'held', 'ambiguous']);
    assert.equal(message?.attempts, 3);
    assert.equal(message?.nextAttemptAt, t0 + HOUR);
  });

  test('recordAttempt refuses an invalid record, writes nothing and keeps the lease', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(2));
    const t0 = later();
    const { lease } = await claimOne(h.current, t0);
    const bad: AttemptRecord[] = [
      attempt(t0, ['delivered', 'delivered', 'delivered']),
      { at: t0, nextHop: '', results: [{ recipient: -1, state: 'delivered', reply: '' }] },
      { at: t0, nextHop: '', results: [{ recipient: 0.5, state: 'delivered', reply: '' }] },
      { at: t0, nextHop: '', results: [{ recipient: 1, state: 'delivered', reply: '' }, { recipient: 1, state: 'deferred', reply: '' }] },
    ];
    for (const record of bad) await rejectsWith(() => h.current.recordAttempt(lease, record), 'QUEUE_INVALID');
    assert.deepEqual(await statesOf(h.current, stored.id), ['queued', 'queued']);
    assert.deepEqual(await h.current.history(stored.id), []);
    assert.equal((await h.current.getMessage(stored.id))?.attempts, 0);
    await h.current.recordAttempt(lease, attempt(t0, ['delivered', 'delivered']));
    assert.deepEqual(await statesOf(h.current, stored.id), ['delivered', 'delivered']);
  });

  test('scheduling state survives reopen', async (h) => {
    const [a, b, c] = await commitMany(h.current, 3, recipientsEnvelope(2));
    const t0 = later();
    const claimed = await claim(h.current, t0);
    await h.current.recordAttempt(leaseOf(claimed, a as QueueId), attempt(t0, ['delivered', 'deferred'], { nextAttemptAt: t0 + HOUR }));
    await h.current.recordAttempt(leaseOf(claimed, b as QueueId), attempt(t0, ['bounced', 'ambiguous'], { nextAttemptAt: t0 + 2 * HOUR }));
    await h.current.releaseLease(leaseOf(claimed, c as QueueId));
    assert.equal(await h.current.hold(c as QueueId, 'operator says wait'), true);
    const before = await Promise.all([a, b, c].map((id) => h.current.getMessage(id as QueueId)));
    const histories = await Promise.all([a, b, c].map((id) => h.current.history(id as QueueId)));
    const counts = await h.current.countByState();
    const again = await h.reopen();
    assert.deepEqual(await Promise.all([a, b, c].map((id) => again.getMessage(id as QueueId))), before);
    assert.deepEqual(await Promise.all([a, b, c].map((id) => again.history(id as QueueId))), histories);
    assert.deepEqual(await again.countByState(), counts);
    assert.deepEqual(await claim(again, t0 + HOUR - 1), []);
    const due = await claim(again, t0 + HOUR);
    assert.deepEqual(claimedIds(due), [a]);
    const delivered = { at: t0 + HOUR, nextHop: '', results: [{ recipient: 1, state: 'delivered', reply: '250 ok' }] } as const;
    await again.recordAttempt(leaseOf(due, a as QueueId), delivered);
    const next = await claim(again, t0 + 2 * HOUR);
    assert.deepEqual(claimedIds(next), [b]);
    assert.equal(next[0]?.attempts, 1);
  });
}

function operatorTests(test: StoreTest): void {
  test('hold stops delivery and release makes it due at once, both in the history', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(3));
    const t0 = later();
    const { lease } = await claimOne(h.current, t0);
    const first: AttemptRecord = {
      at: t0,
      nextHop: '',
      results: [{ recipient: 0, state: 'delivered', reply: '250 ok' }, { recipient: 1, state: 'deferred', reply: '451 later' }],
      nextAttemptAt: t0 + HOUR,
    };
    await h.current.recordAttempt(lease, first);
    const heldAt = Date.now();
    assert.equal(await h.current.hold(stored.id, 'suspected spam run'), true);
    const held = await h.current.getMessage(stored.id);
    assert.deepEqual(held?.recipients.map((r) => r.state), ['delivered', 'held', 'held'], 'deferred and queued recipients are held');
    assert.equal(held?.nextAttemptAt, undefined);
    assert.equal(held?.attempts, 1, 'a hold is not an attempt');
    assert.deepEqual(await claim(h.current, t0 + 100 * HOUR), []);
    assert.equal(await h.current.hold(stored.id, 'again'), false, 'nothing left to hold');
    assert.deepEqual((await h.current.listMessages({ state: 'held' })).map((m) => m.id), [stored.id]);
    assert.deepEqual(await h.current.countByState(), { delivered: 1, held: 2 });

    assert.equal(await h.current.release(stored.id), true);
    const released = await h.current.getMessage(stored.id);
    assert.deepEqual(released?.recipients.map((r) => r.state), ['delivered', 'deferred', 'deferred']);
    const dueAt = released?.nextAttemptAt;
    assert.ok(dueAt !== undefined && dueAt >= heldAt && dueAt <= Date.now(), 'due now, by the store clock');
    assert.equal(await h.current.release(stored.id), false, 'nothing left to release');
    assert.deepEqual(claimedIds(await claim(h.current, t0)), [stored.id], 'due at once, before the deferral time');

    const history = await h.current.history(stored.id);
    assert.equal(history.length, 3);
    assert.deepEqual(history[0], first);
    const [, hold, release] = history;
    assert.deepEqual({ ...hold, at: 0 }, {
      at: 0, nextHop: '', note: 'hold',
      results: [{ recipient: 1, state: 'held', reply: 'suspected spam run' }, { recipient: 2, state: 'held', reply: 'suspected spam run' }],
    });
    assert.deepEqual({ ...release, at: 0, nextAttemptAt: 0 }, {
      at: 0, nextHop: '', note: 'release', nextAttemptAt: 0,
      results: [1, 2].map((recipient) => ({ recipient, state: 'deferred', reply: 'released by operator' })),
    });
    assert.ok(hold && release && hold.at >= heldAt && release.at >= hold.at && release.nextAttemptAt === released?.nextAttemptAt);
    const unknown = newQueueId(Date.now());
    assert.equal(await h.current.hold(unknown, 'x'), false);
    assert.equal(await h.current.release(unknown), false);
  });

  test('a hold during a run outlasts its deferrals but not its deliveries', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(3));
    const t0 = later();
    const { lease } = await claimOne(h.current, t0);
    assert.equal(await h.current.hold(stored.id, 'hold now'), true);
    assert.deepEqual(await claim(h.current, t0 + 2 * LEASE_MS, 'node-b'), [], 'held: not due even after the lease expires');
    await h.current.recordAttempt(lease, attempt(t0 + 1, ['delivered', 'deferred', 'ambiguous'], { nextAttemptAt: t0 + MINUTE }));
    const after = await h.current.getMessage(stored.id);
    assert.deepEqual(after?.recipients.map((r) => r.state), ['delivered', 'held', 'held']);
    assert.equal(after?.nextAttemptAt, undefined);
    assert.deepEqual(await claim(h.current, t0 + HOUR), []);
    assert.equal(await h.current.release(stored.id), true);
    const again = await claimOne(h.current, t0 + HOUR);
    assert.equal(again.attempts, 1);
  });

  test('a release during a run makes the message due at once when the run sets no next time', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(2));
    const t0 = later();
    const first = await claimOne(h.current, t0);
    await h.current.recordAttempt(first.lease, attempt(t0, ['held', 'deferred'], { nextAttemptAt: t0 }));
    const { lease } = await claimOne(h.current, t0);
    assert.equal(await h.current.release(stored.id), true);
    assert.deepEqual(await claim(h.current, t0, 'node-b'), [], 'the live lease still holds it');
    // The run knew of no recipient left to try, so it sets no next time: the released one is due at once.
    await h.current.recordAttempt(lease, { at: t0 + 1, nextHop: '', results: [{ recipient: 1, state: 'delivered', reply: '250 ok' }] });
    const after = await h.current.getMessage(stored.id);
    assert.deepEqual(after?.recipients.map((r) => r.state), ['deferred', 'delivered']);
    assert.equal(after?.nextAttemptAt, t0 + 1);
    assert.deepEqual(claimedIds(await claim(h.current, t0 + 1, 'node-b')), [stored.id]);
  });
}

/** markInWindow (invariant 3): marks under a live lease only, and recordAttempt clears them. */
function windowTests(test: StoreTest): void {
  test('markInWindow marks under the lease, and recordAttempt clears the marks', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(3));
    const t0 = later();
    const { lease } = await claimOne(h.current, t0);
    await h.current.markInWindow(lease, [0, 1], t0);
    await h.current.markInWindow(lease, [0, 1], t0 + 1); // again: only the time moves
    await h.current.markInWindow(lease, [], t0 + 1); // nothing to mark: a no-op
    assert.deepEqual(await statesOf(h.current, stored.id), ['queued', 'queued', 'queued'], 'a mark is not a state');
    assert.deepEqual(await h.current.history(stored.id), [], 'nor a history entry');
    const record = attempt(t0 + 2, ['delivered', 'deferred', 'deferred'], { nextAttemptAt: t0 + HOUR });
    await h.current.recordAttempt(lease, record);
    const message = await h.current.getMessage(stored.id);
    const history = await h.current.history(stored.id);
    assert.deepEqual(history, [record]);
    // Recorded, so no mark is left over: a restart finds nothing to make ambiguous.
    const again = await h.reopen();
    assert.deepEqual(await again.getMessage(stored.id), message);
    assert.deepEqual(await again.history(stored.id), history);
    assert.deepEqual(await statesOf(again, stored.id), ['delivered', 'deferred', 'deferred']);
  });

  test('settleDelivered makes recipients delivered and clears their marks before the attempt is recorded', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(2));
    const t0 = later();
    const { lease } = await claimOne(h.current, t0);
    await h.current.markInWindow(lease, [0, 1], t0);
    await h.current.settleDelivered(lease, [0]);
    assert.deepEqual(await statesOf(h.current, stored.id), ['delivered', 'queued']);
    await assert.rejects(h.current.settleDelivered(lease, [7]), (e: unknown) => e instanceof QueueError && e.code === 'QUEUE_INVALID');
    await assert.rejects(h.current.settleDelivered({ ...lease, token: 'stale' }, [1]), (e: unknown) => e instanceof QueueError && e.code === 'QUEUE_LEASE_LOST');
    // The run dies here, before recordAttempt: the delivered recipient stays delivered and is not
    // due; only a recipient still in the window is the store's to make ambiguous (where supported).
    const again = await h.reopen();
    assert.equal((await statesOf(again, stored.id))[0], 'delivered');
  });

  test('settleDelivered of the last due recipient leaves the message due no more, even unrecorded', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(2));
    const t0 = later();
    const { lease } = (await claim(h.current, t0, 'node-a', 1, 1000))[0] ?? assert.fail('claimed');
    await h.current.settleDelivered(lease, [0, 1]);
    // The run dies here: its lease runs out, and nobody may claim a message with nothing to try.
    assert.deepEqual(await claim(h.current, t0 + HOUR, 'node-b'), []);
    const message = await h.current.getMessage(stored.id);
    assert.equal(message?.nextAttemptAt, undefined);
    assert.deepEqual(message?.recipients.map((r) => r.state), ['delivered', 'delivered']);
  });

  test('markInWindow refuses a lost lease and an invalid call, and writes nothing', async (h) => {
    const stored = await writeAndCommit(h.current, patternBytes(10), recipientsEnvelope(2));
    const t0 = later();
    const a = (await claim(h.current, t0, 'node-a', 1, 1000))[0]?.lease;
    assert.ok(a);
    const b = (await claim(h.current, t0 + 1000, 'node-b', 1, LEASE_MS))[0]?.lease;
    assert.ok(b, 'node-b takes the expired lease');
    await rejectsWith(() => h.current.markInWindow(a, [0, 1], t0 + 1001), 'QUEUE_LEASE_LOST');
    await rejectsWith(() => h.current.markInWindow(b, [2], t0 + 1001), 'QUEUE_INVALID');
    await rejectsWith(() => h.current.markInWindow(b, [-1], t0 + 1001), 'QUEUE_INVALID');
    await rejectsWith(() => h.current.markInWindow(b, [0.5], t0 + 1001), 'QUEUE_INVALID');
    await rejectsWith(() => h.current.markInWindow(b, [0], Number.NaN), 'QUEUE_INVALID');
    assert.equal(await h.current.renewLease(b, t0 + LEASE_MS * 2) !== undefined, true, 'the refusals kept the lease');
    await h.current.recordAttempt(b, attempt(t0 + 1002, ['deferred', 'deferred'], { nextAttemptAt: t0 + HOUR }));
    await rejectsWith(() => h.current.markInWindow(b, [0], t0 + 1003), 'QUEUE_LEASE_LOST');
    const released = (await claim(h.current, t0 + HOUR, 'node-c'))[0]?.lease;
    assert.ok(released);
    await h.current.releaseLease(released);
    await rejectsWith(() => h.current.markInWindow(released, [0], t0 + HOUR), 'QUEUE_LEASE_LOST');
    const purged = (await claim(h.current, t0 + HOUR, 'node-d'))[0]?.lease;
    assert.ok(purged);
    const message = await h.current.getMessage(stored.id);
    const history = await h.current.history(stored.id);
    await h.current.releaseLease(purged);
    assert.equal(history.length, 1);
    assert.deepEqual(await statesOf(h.current, stored.id), ['deferred', 'deferred']);
    // Nothing marked survived the refusals: a restart leaves the recorded state alone.
    const again = await h.reopen();
    assert.deepEqual(await again.history(stored.id), history);
    assert.deepEqual((await again.getMessage(stored.id))?.recipients, message?.recipients);
    assert.equal(await again.purge(stored.id), true);
    await rejectsWith(() => again.markInWindow(purged, [0], t0 + HOUR), 'QUEUE_LEASE_LOST');
  });
}

function fairnessAndConcurrencyTests(test: StoreTest): void {
  test('fresh mail is not starved by a backlog of due retries', async (h) => {
    const backlog = await commitMany(h.current, 20);
    const t0 = later();
    const claimed = await claim(h.current, t0, 'node-a', 20);
    assert.equal(claimed.length, 20);
    // Recorded newest first: retry order is next attempt time, then arrival, not record order.
    for (const c of [...claimed].reverse()) {
      await h.current.recordAttempt(c.lease, attempt(t0, ['deferred'], { nextAttemptAt: t0 + MINUTE }));
    }
    const fresh = await commitMany(h.current, 5);
    const mixed = await claim(h.current, t0 + MINUTE, 'node-a', 10);
    assert.deepEqual(claimedIds(mixed), [...fresh, ...backlog.slice(0, 5)], 'all fresh mail, then the oldest retries');
    assert.deepEqual(mixed.map((c) => c.attempts), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    // With more fresh mail than half the limit, each kind still gets its half.
    const more = await commitMany(h.current, 12);
    const half = await claim(h.current, t0 + MINUTE, 'node-b', 10);
    assert.deepEqual(claimedIds(half), [...more.slice(0, 5), ...backlog.slice(5, 10)]);
    // A limit above what is due takes all of it.
    const rest = await claim(h.current, t0 + MINUTE, 'node-c', 100);
    assert.deepEqual(claimedIds(rest), [...more.slice(5), ...backlog.slice(10)]);
    // Only retries due (fresh mail delivered, retry leases expired): they take every slot.
    for (const c of [...mixed, ...half, ...rest].filter((x) => x.attempts === 0)) {
      await h.current.recordAttempt(c.lease, attempt(t0 + MINUTE, ['delivered']));
    }
    const retries = await claim(h.current, t0 + MINUTE + LEASE_MS, 'node-d', 4);
    assert.deepEqual(claimedIds(retries), backlog.slice(0, 4));
  });

  test('50 concurrent claims from two owners never claim one message twice', async (h) => {
    const ids = await commitMany(h.current, 40);
    const t0 = later();
    const runs = await Promise.all(
      Array.from({ length: 50 }, (_, i) => claim(h.current, t0, i % 2 === 0 ? 'node-a' : 'node-b', 3)),
    );
    const all = runs.flatMap(claimedIds);
    assert.equal(new Set(all).size, all.length, 'no message claimed twice');
    assert.deepEqual([...all].sort(), [...ids].sort(), 'and every due message was claimed');
    const owners = new Map(runs.flatMap((run) => run.map((c) => [c.message.id, c.lease.owner] as const)));
    for (const id of ids) assert.equal((await h.current.getMessage(id))?.lease?.owner, owners.get(id));
    // The same race again, on leases that expired: each message goes to exactly one claimer.
    const expired = await Promise.all(
      Array.from({ length: 50 }, (_, i) => claim(h.current, t0 + LEASE_MS, i % 2 === 0 ? 'node-c' : 'node-d', 3)),
    );
    const retaken = expired.flatMap(claimedIds);
    assert.equal(new Set(retaken).size, retaken.length);
    assert.equal(retaken.length, ids.length);
  });
}
