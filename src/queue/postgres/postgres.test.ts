/**
 * @module queue/postgres/postgres.test
 * The PostgreSQL backend against the shared conformance suite (every test in a schema of its own,
 * dropped afterwards), then what only this backend promises: a dead holder's lease passes to
 * another node once it expires, and its window marks become ambiguous recipients, once; group
 * commit groups; large bodies are streamed in chunks; the schema is refused until migrated, and
 * migrate is idempotent; killed connections fail operations with QUEUE_IO and the store recovers;
 * the advisory-lock destination slots never hand out more than the limit across nodes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { patternBytes, readAll, runStoreConformance, sampleEnvelope, writeAndCommit } from '../conformance.js';
import { AMBIGUOUS_AT_RESTART, QueueError } from '../store.js';
import { migratePostgres, openPostgresStore, PG_SCHEMA_VERSION, PgDestinationSlots } from './index.js';
import type { AmbiguousTakeover, PgQueueStore, PostgresStoreOptions } from './index.js';
import { PG_URL, admin, dropSchema, terminateOwn, testSchemaName } from '../../../test/support/pg.js';

const KiB = 1024;

async function harness(extra: Partial<PostgresStoreOptions> = {}): Promise<{
  store: PgQueueStore;
  schema: string;
  open: (more?: Partial<PostgresStoreOptions>) => Promise<PgQueueStore>;
  reopen: () => Promise<PgQueueStore>;
  cleanup: () => Promise<void>;
}> {
  const schema = testSchemaName();
  const opened: PgQueueStore[] = [];
  const open = async (more: Partial<PostgresStoreOptions> = {}): Promise<PgQueueStore> => {
    const s = await openPostgresStore({ url: PG_URL, schema, node: `${schema}-n${opened.length}`, connections: 4, migrate: true, ...extra, ...more });
    opened.push(s);
    return s;
  };
  let current = await open();
  return {
    store: current,
    schema,
    open,
    reopen: async () => {
      await current.close();
      current = await open();
      return current;
    },
    cleanup: async () => {
      await Promise.all(opened.map((s) => s.close()));
      await dropSchema(schema);
    },
  };
}

runStoreConformance('postgres', () => harness());

describe('postgres store: shared-queue specifics', () => {
  it('a dead holder\'s lease passes to another node after it expires, and its window marks become ambiguous once', async () => {
    const found: AmbiguousTakeover[] = [];
    const h = await harness({ onAmbiguous: (f) => found.push(...f) });
    try {
      const other = await h.open({ onAmbiguous: (f) => found.push(...f) });
      const stored = await writeAndCommit(h.store, patternBytes(10), sampleEnvelope({
        recipients: [{ address: 'a@example.net' }, { address: 'b@example.net' }, { address: 'c@example.net' }],
      }));
      const t0 = Date.now() + 3_600_000;
      const [mine] = await h.store.claimDue({ now: t0, limit: 10, leaseMs: 1000, owner: 'node-a' });
      assert.ok(mine);
      await h.store.markInWindow(mine.lease, [0, 1, 2], t0);
      await h.store.settleDelivered(mine.lease, [2]);
      // node-a "dies" here. node-b sees nothing until the lease has expired.
      assert.deepEqual(await other.claimDue({ now: t0 + 999, limit: 10, leaseMs: 1000, owner: 'node-b' }), []);
      const [taken] = await other.claimDue({ now: t0 + 1000, limit: 10, leaseMs: 60_000, owner: 'node-b' });
      assert.ok(taken, 'node-b takes the expired lease over');
      assert.deepEqual(taken.message.recipients.map((r) => r.state), ['ambiguous', 'ambiguous', 'delivered']);
      assert.deepEqual(found, [{ id: stored.id, recipients: [0, 1], previousOwner: 'node-a' }]);
      const history = await other.history(stored.id);
      assert.equal(history.length, 1);
      assert.equal(history[0]?.note, AMBIGUOUS_AT_RESTART.note);
      assert.equal(taken.attempts, 0, 'a takeover is not an attempt');
      assert.deepEqual((await other.getMessage(stored.id))?.lease, { owner: 'node-b', until: t0 + 61_000 });
      await assert.rejects(h.store.recordAttempt(mine.lease, { at: t0, nextHop: '', results: [] }), (e: unknown) => e instanceof QueueError && e.code === 'QUEUE_LEASE_LOST');
      await other.recordAttempt(taken.lease, { at: t0 + 1001, nextHop: '', results: [0, 1].map((recipient) => ({ recipient, state: 'delivered' as const, reply: '250 ok' })) });
      assert.equal(found.length, 1, 'the marks were resolved once');
    } finally {
      await h.cleanup();
    }
  });

  it('close gives back the leases the node still holds', async () => {
    const h = await harness();
    try {
      const other = await h.open();
      await writeAndCommit(h.store, patternBytes(10));
      const t0 = Date.now();
      assert.equal((await h.store.claimDue({ now: t0, limit: 10, leaseMs: 3_600_000, owner: 'draining' })).length, 1);
      assert.equal(h.store.heldLeases, 1);
      await h.store.close();
      const again = await other.claimDue({ now: t0, limit: 10, leaseMs: 1000, owner: 'node-b' });
      assert.equal(again.length, 1, 'due at once, no lease to wait out');
    } finally {
      await h.cleanup();
    }
  });

  it('group commit: 200 concurrent commits share far fewer than 200 transactions', async () => {
    const h = await harness();
    try {
      await Promise.all(Array.from({ length: 200 }, (_, i) => writeAndCommit(h.store, patternBytes(10 * KiB, i))));
      assert.equal(h.store.stats.commits, 200);
      assert.ok(h.store.stats.flushes < 60, `${h.store.stats.flushes} flushes for 200 commits`);
    } finally {
      await h.cleanup();
    }
  });

  it('a large body is stored in bounded chunks and an aborted one leaves no chunk behind', async () => {
    const h = await harness();
    try {
      const body = patternBytes(3 * 1024 * KiB + 5, 3);
      const stored = await writeAndCommit(h.store, body, sampleEnvelope(), 10_000);
      const chunks = await admin<{ n: number; biggest: number }>(`SELECT count(*)::int AS n, max(length(data))::int AS biggest FROM ${h.schema}.bodies WHERE message_id = $1`, [stored.id]);
      assert.equal(chunks.rows[0]?.n, 25);
      assert.equal(chunks.rows[0]?.biggest, 128 * KiB);
      assert.ok(Buffer.from(body).equals(await readAll(h.store, stored.id)));
      const w = h.store.createMessage();
      await w.write(patternBytes(600 * KiB));
      assert.equal((await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${h.schema}.bodies WHERE message_id = $1`, [w.id])).rows[0]?.n, 4, 'streamed while written');
      await w.abort();
      assert.equal((await admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${h.schema}.bodies WHERE message_id = $1`, [w.id])).rows[0]?.n, 0);
    } finally {
      await h.cleanup();
    }
  });

  it('refuses an unmigrated schema with a message that says to migrate; migrate is idempotent', async () => {
    const schema = testSchemaName();
    try {
      await assert.rejects(openPostgresStore({ url: PG_URL, schema, node: schema }), /run `postwire migrate/);
      const first = await migratePostgres(PG_URL, schema);
      assert.deepEqual([first.from, first.to, first.applied.length], [0, PG_SCHEMA_VERSION, PG_SCHEMA_VERSION]);
      const second = await migratePostgres(PG_URL, schema);
      assert.deepEqual([second.from, second.applied.length], [PG_SCHEMA_VERSION, 0]);
      const store = await openPostgresStore({ url: PG_URL, schema, node: schema });
      await store.close();
    } finally {
      await dropSchema(schema);
    }
  });

  it('killed connections fail operations with QUEUE_IO, never crash, and the store recovers', async () => {
    const errors: Error[] = [];
    const h = await harness({ onConnectionError: (e) => errors.push(e) });
    try {
      const kept = await writeAndCommit(h.store, patternBytes(100));
      const killed = await terminateOwn(h.schema);
      assert.ok(killed >= 1, 'the pool had connections to kill');
      // The idle connections died: the first uses may fail with QUEUE_IO, none may hang or crash.
      const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => writeAndCommit(h.store, patternBytes(100))));
      for (const o of outcomes) if (o.status === 'rejected') assert.ok(o.reason instanceof QueueError && o.reason.code === 'QUEUE_IO', String(o.reason));
      const after = await writeAndCommit(h.store, patternBytes(100, 1));
      assert.ok(await h.store.getMessage(after.id));
      assert.ok(await h.store.getMessage(kept.id));
    } finally {
      await h.cleanup();
    }
  });
});

describe('postgres destination slots (advisory locks)', () => {
  it('never hands out more than the limit across nodes, and a dead node\'s slots free at once', async () => {
    const schema = testSchemaName();
    const nodes = [0, 1, 2].map((i) => new PgDestinationSlots({ url: PG_URL, schema, node: `${schema}-s${i}` }));
    try {
      let active = 0;
      let max = 0;
      const work = Array.from({ length: 60 }, async (_, i) => {
        const release = await (nodes[i % 3] as PgDestinationSlots).acquire('mx:example.net', 5);
        active++;
        max = Math.max(max, active);
        await new Promise((r) => setTimeout(r, 5 + (i % 7)));
        active--;
        release();
      });
      await Promise.all(work);
      assert.ok(max <= 5 && max > 1, `max concurrent ${max}`);
      // A node holding all five dies (its connection goes): the others get them without waiting out anything.
      const holder = nodes[0] as PgDestinationSlots;
      for (let i = 0; i < 5; i++) await holder.acquire('mx:dead.example', 5);
      await terminateOwn(`${schema}-s0`);
      const started = Date.now();
      const release = await (nodes[1] as PgDestinationSlots).acquire('mx:dead.example', 5);
      release();
      assert.ok(Date.now() - started < 3_000);
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  });
});
