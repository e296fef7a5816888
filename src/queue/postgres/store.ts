/**
 * @module queue/postgres/store
 * The shared QueueStore: messages, recipients, body chunks and history in one PostgreSQL schema,
 * used by every node at once. Group commit (committer.ts), streamed bodies (writer.ts), claims
 * with FOR UPDATE SKIP LOCKED and leases (schedule.ts).
 *
 * Leases and crashes: unlike the embedded store, open() clears no lease (other nodes are alive
 * and hold theirs). A dead node's leases simply expire; the next claim takes the work over and
 * turns the RFC 1047 window marks it left into `ambiguous` recipients (onAmbiguous). close()
 * gives back the leases this store handed out and that are still held (a drained node leaves no
 * work waiting for its leases to expire).
 *
 * Costs: getMessage 2 indexed reads; listMessages 2 (a page, then its recipients); readBody one
 * read per READ_CHUNKS chunks (so at most READ_CHUNKS × 128 KiB in memory); purge one durable
 * transaction (rows, history and body chunks go together).
 *
 * Failure: driver errors are QUEUE_IO naming the operation (the pool reconnects on next use, so
 * the store recovers by itself when the database comes back); after close() every operation
 * rejects QUEUE_CLOSED.
 */
import type pg from 'pg';
import type {
  AttemptRecord, ClaimedMessage, ClaimQuery, DomainStats, DomainStatsQuery, Lease, ListQuery, QueueStore, RecipientState, SearchPage, SearchQuery, StoredMessage,
} from '../store.js';
import { QueueError } from '../store.js';
import type { QueueId } from '../ids.js';
import { QueueIdGenerator } from '../ids.js';
import type { CommitStats, PgGroupCommitter } from './committer.js';
import { prepared, query, tx } from './db.js';
import { MESSAGE_COLUMNS, readMessages, withRecipients } from './rows.js';
import type { MessageRow } from './rows.js';
import type { PgSchedule } from './schedule.js';
import { PgMessageWriter } from './writer.js';
import { searchMessages } from './search.js';
import { domainStats } from './stats.js';
import type { PendingCommit, WriterHost } from './writer.js';

/** Chunks fetched per read of readBody. */
const READ_CHUNKS = 4;
const LIST_DEFAULT = 100;
const LIST_CAP = 10_000;

export interface PgStoreParts {
  readonly description: string;
  readonly pool: pg.Pool;
  readonly now: () => number;
  readonly committer: PgGroupCommitter;
  readonly schedule: PgSchedule;
  readonly stats: CommitStats;
  /** Ends the pool; called once by close(). */
  readonly end: () => Promise<void>;
}

type Lifecycle = 'open' | 'closing' | 'closed';

export class PgQueueStore implements QueueStore, WriterHost {
  readonly description: string;
  readonly stats: { readonly commits: number; readonly flushes: number };
  private lifecycle: Lifecycle = 'open';
  private closing: Promise<void> | undefined;
  private readonly writers = new Set<PgMessageWriter>();
  private readonly ids = new QueueIdGenerator();
  /** Leases handed out by claimDue and not yet ended by this store: given back at close(). */
  private readonly held = new Map<QueueId, Lease>();

  constructor(private readonly parts: PgStoreParts) {
    this.description = parts.description;
    this.stats = parts.stats;
  }

  createMessage(): PgMessageWriter {
    const now = this.parts.now();
    const writer = new PgMessageWriter(this.ids.next(now), now, this);
    if (this.lifecycle === 'open') this.writers.add(writer);
    return writer;
  }

  async getMessage(id: QueueId): Promise<StoredMessage | undefined> {
    this.assertOpen();
    try {
      return (await readMessages(prepared(this.parts.pool), [id]))[0];
    } catch (err) {
      throw wrap(`read message ${id}`, err);
    }
  }

  async listMessages(q: ListQuery = {}): Promise<StoredMessage[]> {
    this.assertOpen();
    const limit = Math.min(Math.max(0, Math.floor(q.limit ?? LIST_DEFAULT)), LIST_CAP);
    if (limit === 0) return [];
    const after = q.after ?? '';
    const rows = q.state === undefined
      ? await query<MessageRow>(this.parts.pool, 'list messages', `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id > $1 ORDER BY id LIMIT $2`, [after, limit])
      : await query<MessageRow>(
        this.parts.pool, 'list messages',
        `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id IN (
           SELECT DISTINCT message_id FROM recipients WHERE state = $1 AND message_id > $2 ORDER BY message_id LIMIT $3)
         ORDER BY id`,
        [q.state, after, limit],
      );
    try {
      return await withRecipients(prepared(this.parts.pool), rows.rows);
    } catch (err) {
      throw wrap('list messages', err);
    }
  }

  async countByState(): Promise<Partial<Record<RecipientState, number>>> {
    this.assertOpen();
    const rows = await query<{ state: RecipientState; n: number }>(this.parts.pool, 'count by state', 'SELECT state, count(*) AS n FROM recipients GROUP BY state');
    const out: Partial<Record<RecipientState, number>> = {};
    for (const r of rows.rows) out[r.state] = r.n;
    return out;
  }

  async *readBody(id: QueueId): AsyncGenerator<Uint8Array, void, undefined> {
    this.assertOpen();
    const head = await query<{ size: number; chunks: number }>(this.parts.pool, `read body of ${id}`, 'SELECT size, chunks FROM messages WHERE id = $1', [id]);
    const row = head.rows[0];
    if (row === undefined) throw new QueueError('QUEUE_NOT_FOUND', `message ${id}: not in the queue`);
    let got = 0;
    for (let seq = 0; seq < row.chunks; seq += READ_CHUNKS) {
      this.assertOpen();
      const page = await query<{ seq: number; data: Buffer }>(
        this.parts.pool, `read body of ${id}`,
        'SELECT seq, data FROM bodies WHERE message_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq', [id, seq, seq + READ_CHUNKS],
      );
      if (page.rows.length === 0) break;
      for (const chunk of page.rows) {
        got += chunk.data.byteLength;
        yield chunk.data;
      }
    }
    if (got !== row.size) {
      const still = await query(this.parts.pool, `read body of ${id}`, 'SELECT 1 FROM messages WHERE id = $1', [id]);
      if (still.rowCount === 0) throw new QueueError('QUEUE_NOT_FOUND', `message ${id}: purged while being read`);
      throw new QueueError('QUEUE_CORRUPT', `message ${id}: the queue holds ${got} of ${row.size} body bytes`);
    }
  }

  async purge(id: QueueId): Promise<boolean> {
    this.assertOpen();
    this.held.delete(id);
    return tx(this.parts.pool, `purge ${id}`, true, async (db) => {
      const gone = await db.query('DELETE FROM messages WHERE id = $1', [id]);
      await db.query('DELETE FROM bodies WHERE message_id = $1', [id]);
      return gone.rowCount === 1;
    });
  }

  async claimDue(q: ClaimQuery): Promise<ClaimedMessage[]> {
    this.assertOpen();
    const claimed = await this.parts.schedule.claimDue(q);
    for (const c of claimed) this.held.set(c.message.id, c.lease);
    return claimed;
  }

  async renewLease(lease: Lease, until: number): Promise<Lease | undefined> {
    this.assertOpen();
    const renewed = await this.parts.schedule.renewLease(lease, until);
    if (renewed === undefined) this.forget(lease);
    return renewed;
  }

  async recordAttempt(lease: Lease, record: AttemptRecord): Promise<void> {
    this.assertOpen();
    try {
      await this.parts.schedule.recordAttempt(lease, record);
      this.forget(lease);
    } catch (err) {
      if (err instanceof QueueError && err.code === 'QUEUE_LEASE_LOST') this.forget(lease);
      throw err;
    }
  }

  async markInWindow(lease: Lease, recipients: readonly number[], at: number): Promise<void> {
    this.assertOpen();
    await this.parts.schedule.markInWindow(lease, recipients, at);
  }

  async settleDelivered(lease: Lease, recipients: readonly number[]): Promise<void> {
    this.assertOpen();
    await this.parts.schedule.settleDelivered(lease, recipients);
  }

  async releaseLease(lease: Lease, notBefore?: number): Promise<void> {
    this.assertOpen();
    await this.parts.schedule.releaseLease(lease, notBefore);
    this.forget(lease);
  }

  async history(id: QueueId): Promise<AttemptRecord[]> {
    this.assertOpen();
    return this.parts.schedule.history(id);
  }

  async hold(id: QueueId, reason: string): Promise<boolean> {
    this.assertOpen();
    return this.parts.schedule.hold(id, reason, this.parts.now());
  }

  async release(id: QueueId): Promise<boolean> {
    this.assertOpen();
    return this.parts.schedule.release(id, this.parts.now());
  }

  async searchMessages(query: SearchQuery): Promise<SearchPage> {
    this.assertOpen();
    try {
      return await searchMessages(prepared(this.parts.pool), query);
    } catch (err) {
      throw wrap('search messages', err);
    }
  }

  async retryNow(id: QueueId): Promise<boolean> {
    this.assertOpen();
    return this.parts.schedule.retryNow(id, this.parts.now());
  }

  async operatorDelete(id: QueueId, reason: string): Promise<number[]> {
    this.assertOpen();
    return this.parts.schedule.operatorFinal(id, 'deleted', reason, this.parts.now());
  }

  async operatorBounce(id: QueueId, reason: string, recipients: readonly number[]): Promise<number[]> {
    this.assertOpen();
    return this.parts.schedule.operatorFinal(id, 'bounced', reason, this.parts.now(), recipients);
  }

  async domainStats(query: DomainStatsQuery): Promise<DomainStats[]> {
    this.assertOpen();
    if (!Number.isFinite(query.deliveredSince)) {
      throw new QueueError('QUEUE_INVALID', `domainStats: deliveredSince ${query.deliveredSince} is not a finite time`);
    }
    try {
      return await domainStats(prepared(this.parts.pool), query);
    } catch (err) {
      throw wrap('domain stats', err);
    }
  }

  /** Leases this store holds now (for the drain log line). */
  get heldLeases(): number {
    return this.held.size;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // WriterHost

  assertOpen(): void {
    if (this.lifecycle !== 'open') throw new QueueError('QUEUE_CLOSED', `${this.description}: store is closed`);
  }

  async writeChunk(id: QueueId, seq: number, data: Buffer): Promise<void> {
    await query(this.parts.pool, `write body chunk ${seq} of ${id}`, 'INSERT INTO bodies (message_id, seq, data, written_at) VALUES ($1, $2, $3, $4)', [id, seq, data, this.parts.now()]);
  }

  async dropChunks(id: QueueId): Promise<void> {
    // Best effort: the orphan sweep at the next open takes what this misses.
    await this.parts.pool.query('DELETE FROM bodies WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM messages WHERE id = $1)', [id]).catch(() => undefined);
  }

  submit(pending: PendingCommit): Promise<StoredMessage> {
    return this.parts.committer.submit(pending);
  }

  finished(writer: PgMessageWriter): void {
    this.writers.delete(writer);
  }

  private forget(lease: Lease): void {
    if (this.held.get(lease.id)?.token === lease.token) this.held.delete(lease.id);
  }

  private async shutdown(): Promise<void> {
    this.lifecycle = 'closing';
    await Promise.all([...this.writers].map((w) => w.abort()));
    await this.parts.committer.drain();
    // Give back what this node still holds, so no other node waits for these leases to expire.
    const leases = [...this.held.values()];
    this.held.clear();
    if (leases.length > 0) {
      await this.parts.pool.query(
        `UPDATE messages m SET lease_owner = NULL, lease_token = NULL, lease_until = NULL
         FROM unnest($1::text[], $2::text[]) AS t(id, token) WHERE m.id = t.id AND m.lease_token = t.token`,
        [leases.map((l) => l.id), leases.map((l) => l.token)],
      ).catch(() => undefined);
    }
    await this.parts.end();
    this.lifecycle = 'closed';
  }
}

function wrap(what: string, err: unknown): QueueError {
  if (err instanceof QueueError) return err;
  return new QueueError('QUEUE_IO', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
