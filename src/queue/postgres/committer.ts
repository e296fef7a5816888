/**
 * @module queue/postgres/committer
 * Group commit for the shared queue. submit() enqueues a finished message; a flush takes every
 * pending commit (up to maxBatch) and writes them in ONE durable transaction: the message rows,
 * all their recipients and the tail chunks of their bodies as three multi-row INSERTs (unnest of
 * arrays), then COMMIT, which waits for the WAL flush. Only then does every commit of the batch
 * resolve. Up to `maxFlushes` flushes run at once on different connections (PostgreSQL groups
 * their WAL flushes itself), so a batch forms while the previous one is committing.
 *
 * A message that streamed chunks is checked in the same transaction: its chunk count must be
 * what its writer wrote (an orphan sweep or a failed write could have removed one); a message
 * that fails the check is rejected alone (QUEUE_IO), before the batch's INSERTs.
 *
 * Costs per batch: 1 connection checkout, 5 round trips (BEGIN, the check when needed, three
 * INSERTs, COMMIT), 1 WAL flush, whatever the batch size.
 * Failure: any error rejects every commit of that batch with QUEUE_IO and none of them exists
 * (the transaction rolled back). A COMMIT whose reply was lost with the connection may in fact
 * have committed: the sessions then answered 451 for mail that is queued, and the client's retry
 * makes a duplicate (never a loss: no 250 is sent for what was not stored).
 */
import type pg from 'pg';
import type { StoredMessage } from '../store.js';
import { prependOctets } from '../prepend.js';
import { QueueError } from '../store.js';
import { ioError, tx } from './db.js';
import { encodeNotify } from '../rows.js';
import type { PendingCommit } from './writer.js';

interface Waiting {
  readonly pending: PendingCommit;
  readonly resolve: (message: StoredMessage) => void;
  readonly reject: (err: unknown) => void;
}

export interface CommitStats {
  commits: number;
  flushes: number;
}

export class PgGroupCommitter {
  private queue: Waiting[] = [];
  private running = 0;
  private closed = false;
  private idle: Array<() => void> = [];

  constructor(
    private readonly pool: pg.Pool,
    private readonly maxBatch: number,
    private readonly maxFlushes: number,
    readonly stats: CommitStats,
  ) {}

  submit(pending: PendingCommit): Promise<StoredMessage> {
    if (this.closed) return Promise.reject(new QueueError('QUEUE_CLOSED', `message ${pending.id}: store is closed`));
    return new Promise((resolve, reject) => {
      this.queue.push({ pending, resolve, reject });
      this.kick();
    });
  }

  /** Refuse new work, then wait for everything already submitted. */
  async drain(): Promise<void> {
    this.closed = true;
    if (this.running === 0 && this.queue.length === 0) return;
    await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  private kick(): void {
    if (this.running >= this.maxFlushes || this.queue.length === 0) return;
    this.running++;
    // One macrotask first: commits finishing in the same turn share the flush.
    setImmediate(() => {
      void this.flush().finally(() => {
        this.running--;
        if (this.queue.length > 0) this.kick();
        else if (this.running === 0) for (const done of this.idle.splice(0)) done();
      });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue.splice(0, this.maxBatch);
    if (batch.length === 0) return;
    let rejected = new Set<Waiting>();
    try {
      rejected = await tx(this.pool, `commit ${batch.length} message(s)`, true, async (db) => {
        const bad = await this.checkStreamed(db, batch);
        const good = batch.filter((w) => !bad.has(w));
        if (good.length > 0) await insertBatch(db, good.map((w) => w.pending));
        return bad;
      });
    } catch (err) {
      const cause = ioError('commit', err);
      for (const w of batch) w.reject(new QueueError('QUEUE_IO', `message ${w.pending.id}: not committed: ${cause.message}`, { cause }));
      return;
    }
    this.stats.flushes += 1;
    for (const w of batch) {
      if (rejected.has(w)) {
        w.reject(new QueueError('QUEUE_IO', `message ${w.pending.id}: not committed: body chunks missing`));
        continue;
      }
      this.stats.commits += 1;
      w.resolve(storedOf(w.pending));
    }
  }

  private async checkStreamed(db: Pick<pg.PoolClient, 'query'>, batch: readonly Waiting[]): Promise<Set<Waiting>> {
    const streamed = batch.filter((w) => w.pending.streamed > 0);
    const bad = new Set<Waiting>();
    if (streamed.length === 0) return bad;
    const counts = await db.query<{ message_id: string; n: number }>(
      'SELECT message_id, count(*) AS n FROM bodies WHERE message_id = ANY($1::text[]) GROUP BY message_id',
      [streamed.map((w) => w.pending.id)],
    );
    const got = new Map(counts.rows.map((r) => [r.message_id, r.n]));
    for (const w of streamed) if (got.get(w.pending.id) !== w.pending.streamed) bad.add(w);
    return bad;
  }
}

async function insertBatch(db: Pick<pg.PoolClient, 'query'>, batch: readonly PendingCommit[]): Promise<void> {
  const chunksOf = (p: PendingCommit): number => p.streamed + (p.tail.byteLength > 0 ? 1 : 0);
  await db.query(
    `INSERT INTO messages (id, received_at, sender, envelope, size, chunks, next_attempt_at)
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::int[], $7::bigint[])`,
    [
      batch.map((p) => p.id),
      batch.map((p) => p.receivedAt),
      batch.map((p) => p.envelope.sender),
      batch.map((p) => JSON.stringify(p.envelope)),
      batch.map((p) => p.size),
      batch.map(chunksOf),
      batch.map((p) => (p.envelope.recipients.length > 0 ? p.receivedAt : null)),
    ],
  );
  const r = { id: [] as string[], idx: [] as number[], address: [] as string[], notify: [] as Array<string | null>, orcpt: [] as Array<string | null> };
  for (const p of batch) {
    p.envelope.recipients.forEach((rcpt, idx) => {
      r.id.push(p.id);
      r.idx.push(idx);
      r.address.push(rcpt.address);
      r.notify.push(encodeNotify(rcpt.notify));
      r.orcpt.push(rcpt.orcpt ?? null);
    });
  }
  if (r.id.length > 0) {
    await db.query(
      `INSERT INTO recipients (message_id, idx, address, notify, orcpt, state)
       SELECT id, idx, address, notify, orcpt, 'queued' FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[])
         AS t(id, idx, address, notify, orcpt)`,
      [r.id, r.idx, r.address, r.notify, r.orcpt],
    );
  }
  const tails = batch.filter((p) => p.tail.byteLength > 0);
  if (tails.length > 0) {
    const now = Date.now();
    await db.query(
      `INSERT INTO bodies (message_id, seq, data, written_at) SELECT id, seq, data, $4 FROM unnest($1::text[], $2::int[], $3::bytea[]) AS t(id, seq, data)`,
      [tails.map((p) => p.id), tails.map((p) => p.streamed), tails.map((p) => p.tail), now],
    );
  }
}

/** The StoredMessage a commit resolves with, without a read back. */
function storedOf(p: PendingCommit): StoredMessage {
  return {
    id: p.id,
    envelope: p.envelope,
    recipients: p.envelope.recipients.map((r) => ({ ...r, state: 'queued' as const })),
    size: p.size + prependOctets(p.envelope),
    receivedAt: p.receivedAt,
    ...(p.envelope.recipients.length > 0 ? { nextAttemptAt: p.receivedAt } : {}),
    attempts: 0,
  };
}
