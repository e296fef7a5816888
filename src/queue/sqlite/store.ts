/**
 * @module queue/sqlite/store
 * The embedded QueueStore: an index in SQLite, bodies under the spool dir, group commit between
 * them. Layout of `dir`: `index.sqlite` (+ WAL), `segments/NNNNNNNN.seg` (small bodies back to
 * back), `bodies/<id>` (bodies larger than inlineLimit, one file each).
 *
 * Costs: createMessage() does no I/O. getMessage/listMessages/countByState/history are synchronous
 * indexed reads wrapped in promises; domainStats (stats-db.ts) is one synchronous aggregate read
 * over every recipient and history row. readBody() hands out a just-committed segment body from
 * memory the first time (recent-bodies.ts: bounded, only bytes the commit already held), else
 * reads a segment body by positional reads through a shared handle (the active segment's own, so
 * a fresh delivery costs one pread and no open), and a spilled body as a 64 KiB-chunk stream. purge() is one synchronous SQLite transaction plus
 * the WAL barrier, then an unlink of the spill file or, when the segment it lived in is no longer
 * active and now empty, of that segment. searchMessages is one statement per page (index-db.ts:
 * filters evaluated per message in sort order; case-insensitive matching through a registered
 * JavaScript function). Scheduling (schedule-db.ts): the delivery hot path's calls (claimDue,
 * renewLease, releaseLease, markInWindow, settleDelivered, recordAttempt) of one event-loop turn
 * share one synchronous transaction, each in its own savepoint (turn-batch.ts), settled after
 * its COMMIT; hold, release, retryNow, operatorDelete and operatorBounce are each a transaction
 * of their own. recordAttempt and the operator calls then await the WAL barrier (IndexDb.durable:
 * one fdatasync on the threadpool shared by every commit of the turn, so no fsync ever holds the
 * loop); the others nobody waits to flush (lease columns and window marks: kept by a SIGKILL,
 * possibly lost by a power cut, and then a duplicate is possible but not logged as ambiguous).
 *
 * Leases and crashes: this store is single-process (SQLite's exclusive lock), so no lease can be
 * live when it opens. open() clears every lease (recovery.releasedLeases counts them): work in
 * flight before a crash or kill is due again at once. That is the embedded store's crash
 * recovery for leases; a shared backend relies on lease expiry instead. Before that, open() turns
 * every window mark no recordAttempt cleared into an `ambiguous` recipient with a history entry
 * (note 'ambiguous-at-restart'), listed in recovery.ambiguous for the log. hold/release stamp
 * their history entries with the store's clock (options.clock).
 *
 * Out of scope, on purpose: compaction. A segment is deleted only when every message in it is
 * purged, so one long-lived message pins its whole segment (up to segmentSize + a batch). A later
 * compactor can copy the survivors of sparse segments into the active one and repoint their rows.
 *
 * Failure: I/O errors are QUEUE_IO with path and id; a body missing or shorter than its row is
 * QUEUE_CORRUPT (reported at open, and again by readBody); after close() every operation rejects
 * QUEUE_CLOSED. It trusts that it is the only process using `dir` (SQLite's exclusive lock holds
 * others off) and its callers for envelope validity.
 */
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  AttemptRecord, ClaimedMessage, ClaimQuery, DomainStats, DomainStatsQuery, Lease, ListQuery, QueueStore, RecipientState, SearchPage,
  SearchQuery, StoredMessage,
} from '../store.js';
import { QueueError } from '../store.js';
import type { QueueId } from '../ids.js';
import { QueueIdGenerator } from '../ids.js';
import type { CommitStats, GroupCommitter } from './committer.js';
import type { BodyRow, IndexDb } from './index-db.js';
import type { RecoveryReport } from './recovery.js';
import type { RecentBodies } from './recent-bodies.js';
import type { SegmentLog } from './segments.js';
import { SqliteMessageWriter } from './writer.js';
import type { PendingCommit, WriterHost } from './writer.js';
import { ioError, isMissing, removeFile } from './fs-util.js';

export const READ_CHUNK = 64 * 1024;

export interface StoreParts {
  readonly dir: string;
  readonly bodiesDir: string;
  readonly now: () => number;
  readonly inlineLimit: number;
  readonly index: IndexDb;
  readonly segments: SegmentLog;
  readonly committer: GroupCommitter;
  readonly stats: CommitStats;
  readonly recovery: RecoveryReport;
  /** bodies/ held open for the committer's directory fsyncs; closed after the last batch. */
  readonly bodiesHandle: FileHandle;
  /** Just-committed segment bodies for their first read (recent-bodies.ts). */
  readonly recent: RecentBodies;
}

type Lifecycle = 'open' | 'closing' | 'closed';

export class SqliteQueueStore implements QueueStore, WriterHost {
  readonly description: string;
  readonly stats: { readonly commits: number; readonly flushes: number };
  readonly recovery: RecoveryReport;
  readonly inlineLimit: number;
  private lifecycle: Lifecycle = 'open';
  private closing: Promise<void> | undefined;
  private readonly writers = new Set<SqliteMessageWriter>();
  private readonly ids = new QueueIdGenerator();

  constructor(private readonly parts: StoreParts) {
    this.description = `sqlite:${parts.dir}`;
    this.stats = parts.stats;
    this.recovery = parts.recovery;
    this.inlineLimit = parts.inlineLimit;
  }

  /** Bytes of just-committed bodies held for their first read (recent-bodies.ts): for tests and stats. */
  get recentBytes(): number {
    return this.parts.recent.bytes;
  }

  /** Transactions the turn batch has committed (turn-batch.ts): for tests and stats. */
  get scheduleTransactions(): number {
    return this.parts.index.batch.transactions;
  }

  createMessage(): SqliteMessageWriter {
    const now = this.parts.now();
    const writer = new SqliteMessageWriter(this.ids.next(now), now, this);
    if (this.lifecycle === 'open') this.writers.add(writer);
    return writer;
  }

  async getMessage(id: QueueId): Promise<StoredMessage | undefined> {
    this.assertOpen();
    return this.parts.index.getMessage(id);
  }

  async listMessages(query: ListQuery = {}): Promise<StoredMessage[]> {
    this.assertOpen();
    return this.parts.index.listMessages(query);
  }

  async countByState(): Promise<Partial<Record<RecipientState, number>>> {
    this.assertOpen();
    return this.parts.index.countByState();
  }

  async *readBody(id: QueueId): AsyncGenerator<Uint8Array, void, undefined> {
    this.assertOpen();
    const recent = this.parts.recent.take(id);
    if (recent !== undefined) {
      yield recent;
      return;
    }
    const row = this.parts.index.getBody(id);
    if (row === undefined) throw new QueueError('QUEUE_NOT_FOUND', `message ${id}: not in the queue`);
    if (row.size === 0) return;
    const { path, start } = this.bodyRange(row);
    let got = 0;
    try {
      const chunks = row.location.kind === 'segment'
        ? this.parts.segments.read(row.location.segment, start, row.size, READ_CHUNK)
        : (createReadStream(path, { start, end: start + row.size - 1, highWaterMark: READ_CHUNK }) as AsyncIterable<Buffer>);
      for await (const chunk of chunks) {
        got += chunk.byteLength;
        yield chunk;
      }
    } catch (err) {
      if (err instanceof QueueError && err.code === 'QUEUE_CORRUPT') throw err;
      throw this.readFailure(id, path, err);
    }
    if (got !== row.size) {
      throw new QueueError('QUEUE_CORRUPT', `message ${id}: ${path} holds ${got} of ${row.size} body bytes`);
    }
  }

  async purge(id: QueueId): Promise<boolean> {
    this.assertOpen();
    const row = this.parts.index.deleteMessage(id);
    this.parts.recent.forget(id);
    if (row === undefined) return false;
    await this.parts.index.durable();
    // The rows are gone durably; freeing the bytes can lag (or fail): recovery reclaims leftovers.
    if (row.location.kind === 'file') await removeFile(this.bodyPath(id)).catch(() => undefined);
    else await this.parts.segments.forget(row.location.segment);
    return true;
  }

  async claimDue(query: ClaimQuery): Promise<ClaimedMessage[]> {
    this.assertOpen();
    return this.parts.index.batch.run(() => this.parts.index.schedule.claimDue(query));
  }

  async renewLease(lease: Lease, until: number): Promise<Lease | undefined> {
    this.assertOpen();
    return this.parts.index.batch.run(() => this.parts.index.schedule.renewLease(lease, until));
  }

  async recordAttempt(lease: Lease, record: AttemptRecord): Promise<void> {
    this.assertOpen();
    await this.parts.index.batch.run(() => this.parts.index.schedule.recordAttempt(lease, record));
    await this.parts.index.durable();
  }

  async markInWindow(lease: Lease, recipients: readonly number[], at: number): Promise<void> {
    this.assertOpen();
    await this.parts.index.batch.run(() => this.parts.index.schedule.markInWindow(lease, recipients, at));
  }

  async settleDelivered(lease: Lease, recipients: readonly number[]): Promise<void> {
    this.assertOpen();
    await this.parts.index.batch.run(() => this.parts.index.schedule.settleDelivered(lease, recipients));
  }

  async releaseLease(lease: Lease, notBefore?: number): Promise<void> {
    this.assertOpen();
    await this.parts.index.batch.run(() => this.parts.index.schedule.releaseLease(lease, notBefore));
  }

  async history(id: QueueId): Promise<AttemptRecord[]> {
    this.assertOpen();
    return this.parts.index.schedule.history(id);
  }

  async hold(id: QueueId, reason: string): Promise<boolean> {
    this.assertOpen();
    const held = this.parts.index.schedule.hold(id, reason, this.parts.now());
    if (held) await this.parts.index.durable();
    return held;
  }

  async release(id: QueueId): Promise<boolean> {
    this.assertOpen();
    const released = this.parts.index.schedule.release(id, this.parts.now());
    if (released) await this.parts.index.durable();
    return released;
  }

  async searchMessages(query: SearchQuery): Promise<SearchPage> {
    this.assertOpen();
    return this.parts.index.search(query);
  }

  async retryNow(id: QueueId): Promise<boolean> {
    this.assertOpen();
    const retried = this.parts.index.schedule.retryNow(id, this.parts.now());
    if (retried) await this.parts.index.durable();
    return retried;
  }

  async operatorDelete(id: QueueId, reason: string): Promise<number[]> {
    this.assertOpen();
    const moved = this.parts.index.schedule.operatorFinal(id, 'deleted', reason, this.parts.now());
    if (moved.length > 0) await this.parts.index.durable();
    return moved;
  }

  async operatorBounce(id: QueueId, reason: string, recipients: readonly number[]): Promise<number[]> {
    this.assertOpen();
    const moved = this.parts.index.schedule.operatorFinal(id, 'bounced', reason, this.parts.now(), recipients);
    if (moved.length > 0) await this.parts.index.durable();
    return moved;
  }

  // Admin aggregates (stats-db.ts).

  async domainStats(query: DomainStatsQuery): Promise<DomainStats[]> {
    this.assertOpen();
    if (!Number.isFinite(query.deliveredSince)) {
      throw new QueueError('QUEUE_INVALID', `domainStats: deliveredSince ${query.deliveredSince} is not a finite time`);
    }
    return this.parts.index.stats.domainStats(query);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // WriterHost

  bodyPath(id: QueueId): string {
    return join(this.parts.bodiesDir, id);
  }

  assertOpen(): void {
    if (this.lifecycle !== 'open') throw new QueueError('QUEUE_CLOSED', `${this.description}: store is closed`);
  }

  submit(pending: PendingCommit): Promise<StoredMessage> {
    return this.parts.committer.submit(pending);
  }

  finished(writer: SqliteMessageWriter): void {
    this.writers.delete(writer);
  }

  private async shutdown(): Promise<void> {
    this.lifecycle = 'closing';
    // Commits already handed to the committer are flushed; writers still writing are aborted.
    await Promise.all([...this.writers].map((w) => w.abort()));
    await this.parts.committer.drain();
    await this.parts.segments.close();
    await this.parts.bodiesHandle.close().catch(() => undefined);
    await this.parts.index.close();
    this.parts.recent.clear();
    this.lifecycle = 'closed';
  }

  private bodyRange(row: BodyRow): { path: string; start: number } {
    if (row.location.kind === 'file') return { path: this.bodyPath(row.id), start: 0 };
    return { path: this.parts.segments.path(row.location.segment), start: row.location.offset };
  }

  /** A body that vanished because the message was purged meanwhile is NOT_FOUND, not corruption. */
  private readFailure(id: QueueId, path: string, err: unknown): QueueError {
    if (!isMissing(err)) return ioError(`read body of ${id} from`, path, err);
    if (this.lifecycle === 'open' && this.parts.index.getBody(id) === undefined) {
      return new QueueError('QUEUE_NOT_FOUND', `message ${id}: purged while being read`);
    }
    return new QueueError('QUEUE_CORRUPT', `message ${id}: body file ${path} is missing`, { cause: err });
  }
}
