/**
 * @module queue/sqlite/committer
 * Group commit. submit() enqueues a finished message; one loop takes everything pending (up to
 * maxBatch) and makes it durable together:
 *   1. in parallel: all inline bodies appended to the active segment with one writev + one
 *      fdatasync; each spilled body file fsynced; bodies/ fsynced once (the files' names);
 *   2. then every row of the batch inserted in ONE SQLite transaction, made durable by one WAL
 *      fdatasync on the threadpool (IndexDb.durable, shared with every other commit meanwhile);
 *   3. then every commit of the batch resolves.
 * Commits that arrive while a batch is in flight form the next batch, so throughput is
 * batches/s × batch size and latency is about one flush. The order body-then-row is what makes a
 * row proof of a durable body (the Postfix "fsync, then mark ready" order).
 *
 * Costs per batch: 1 writev, 1 fdatasync, N file fsyncs (threadpool, in parallel), 1 directory
 * fsync when anything spilled, 1 synchronous SQLite transaction without an fsync, and a share of
 * one WAL fdatasync (threadpool). No fsync ever holds the event loop. Step 1 of the next batch
 * runs while this one's rows are inserted and flushed (a pipeline).
 *
 * Failure: any error in steps 1–2 rejects every commit of that batch with QUEUE_IO and none of
 * them is committed (the transaction rolls back; segment bytes become an unreferenced hole or a
 * tail that recovery truncates; spill files are removed by their writers). Later batches proceed.
 */
import type { FileHandle } from 'node:fs/promises';
import type { StoredMessage } from '../store.js';
import { QueueError } from '../store.js';
import type { IndexDb, NewRow } from './index-db.js';
import { storedFromRow } from './index-db.js';
import type { RecentBodies } from './recent-bodies.js';
import type { SegmentLog } from './segments.js';
import type { PendingCommit } from './writer.js';
import { ioError } from './fs-util.js';

type Durable = { readonly ok: true; readonly rows: NewRow[] } | { readonly ok: false; readonly err: unknown };

interface InFlight {
  readonly batch: Waiting[];
  readonly durable: Promise<Durable>;
}

interface Waiting {
  readonly pending: PendingCommit;
  readonly resolve: (message: StoredMessage) => void;
  readonly reject: (err: unknown) => void;
}

export interface CommitStats {
  commits: number;
  flushes: number;
}

export class GroupCommitter {
  private queue: Waiting[] = [];
  private running: Promise<void> | undefined;
  /** Batches whose rows are committed and whose WAL barrier is still running. */
  private readonly flushing = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly index: IndexDb,
    private readonly segments: SegmentLog,
    private readonly bodiesDir: string,
    /** bodies/ opened once: each batch's directory fsync is then a single call. */
    private readonly bodiesDirHandle: FileHandle,
    private readonly maxBatch: number,
    readonly stats: CommitStats,
    /** Durable segment bodies are offered here for the delivery that follows (recent-bodies.ts). */
    private readonly recent?: RecentBodies,
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
    while (this.running !== undefined) await this.running;
    await Promise.all([...this.flushing]);
  }

  private kick(): void {
    if (this.running !== undefined) return;
    this.running = this.run().finally(() => {
      this.running = undefined;
      // A commit submitted after the loop saw an empty queue but before this ran would strand.
      if (this.queue.length > 0) this.kick();
    });
  }

  private async run(): Promise<void> {
    // Yield one macrotask before the first batch: commits issued in the same turn (a burst of
    // writers finishing together) then share the flush instead of the first going alone.
    await new Promise<void>((resolve) => setImmediate(resolve));
    let current = this.startBatch();
    while (current !== undefined) {
      const durable = await current.durable;
      // Two-stage pipeline: the next batch's write + fdatasync start on the threadpool before
      // this batch's synchronous SQLite transaction, so the two fsyncs overlap. The next batch
      // is taken only now, after this one's segment append finished, so offsets stay ordered.
      const next = this.startBatch();
      this.finish(current.batch, durable);
      current = next;
    }
  }

  private startBatch(): InFlight | undefined {
    if (this.queue.length === 0) return undefined;
    const batch = this.queue.splice(0, this.maxBatch);
    const durable = this.makeBodiesDurable(batch.map((w) => w.pending)).then(
      (rows): Durable => ({ ok: true, rows }),
      (err: unknown): Durable => ({ ok: false, err }),
    );
    return { batch, durable };
  }

  /** Step 2 and 3: the one transaction, then every commit of the batch settles, whatever happens. */
  private finish(batch: readonly Waiting[], durable: Durable): void {
    try {
      this.settle(batch, durable);
    } catch (err) {
      // A bug past the transaction (mapping a row, say) must not strand the batch's sessions.
      this.rejectAll(batch, err);
    }
  }

  private settle(batch: readonly Waiting[], durable: Durable): void {
    let failure: unknown = durable.ok ? undefined : durable.err;
    if (durable.ok) {
      try {
        this.index.insertBatch(durable.rows);
      } catch (err) {
        failure = err;
        this.forgetPlaced(durable.rows);
      }
    }
    if (failure !== undefined || !durable.ok) {
      this.rejectAll(batch, failure);
      return;
    }
    // Claims can see the rows from now on, so their bodies are offered now, not after the WAL
    // barrier: a delivery that starts within that millisecond would otherwise miss them.
    batch.forEach((w, i) => {
      const row = durable.rows[i];
      const body = w.pending.body;
      if (row !== undefined && body.kind === 'inline' && row.location.kind === 'segment') this.recent?.put(row.id, body.bytes);
    });
    // The rows are committed (visible) but not yet fsynced: the 250s wait for the WAL barrier,
    // which runs on the threadpool while the loop takes the next batch. A barrier failure
    // rejects the batch although its rows stay: the clients get a 4xx and may send again, a
    // possible duplicate but never a loss (and the store refuses every later commit).
    const rows = durable.rows;
    const flushed = this.index.durable().then(
      () => {
        this.stats.flushes += 1;
        this.stats.commits += rows.length;
        batch.forEach((w, i) => {
          const row = rows[i];
          if (row !== undefined) w.resolve(storedFromRow(row));
        });
      },
      (err: unknown) => this.rejectAll(batch, err),
    );
    this.flushing.add(flushed);
    void flushed.finally(() => this.flushing.delete(flushed));
  }

  private rejectAll(batch: readonly Waiting[], err: unknown): void {
    const cause = err instanceof QueueError ? err : ioError('commit batch in', this.bodiesDir, err);
    for (const w of batch) {
      w.reject(new QueueError('QUEUE_IO', `message ${w.pending.id}: not committed: ${cause.message}`, { cause }));
    }
  }

  /** Rows that did not commit no longer hold their segment records. */
  private forgetPlaced(rows: readonly NewRow[]): void {
    const perSegment = new Map<number, number>();
    for (const r of rows) {
      if (r.location.kind === 'segment') perSegment.set(r.location.segment, (perSegment.get(r.location.segment) ?? 0) + 1);
    }
    for (const [segment, n] of perSegment) void this.segments.forget(segment, n);
  }

  /** Step 1: segment append + fdatasync, spill fsyncs, bodies/ fsync, all at once. */
  private async makeBodiesDurable(batch: readonly PendingCommit[]): Promise<NewRow[]> {
    const inline: Uint8Array[] = [];
    const spilled: Array<Promise<void>> = [];
    for (const p of batch) {
      if (p.body.kind === 'inline') inline.push(p.body.bytes);
      else spilled.push(syncFile(p.body.fh, p.body.path));
    }
    if (spilled.length > 0) spilled.push(syncFile(this.bodiesDirHandle, this.bodiesDir));
    const placing = inline.length > 0 ? this.segments.appendDurable(inline) : Promise.resolve(undefined);
    const [placed, ...rest] = await Promise.allSettled([placing, ...spilled]);
    // allSettled, not all: no fsync may still be running on a file its writer is about to unlink.
    const failed = [placed, ...rest].find((r) => r?.status === 'rejected');
    if (failed?.status === 'rejected') {
      // The segment part may have succeeded: its records will have no rows, so release them.
      if (placed?.status === 'fulfilled' && placed.value !== undefined) void this.segments.forget(placed.value.segment, inline.length);
      throw failed.reason;
    }
    if (placed?.status !== 'fulfilled') throw new Error('invariant: placement missing');
    let next = 0;
    return batch.map((p): NewRow => {
      const base = { id: p.id, receivedAt: p.receivedAt, envelope: p.envelope, size: p.size };
      if (p.body.kind === 'file') return { ...base, location: { kind: 'file' } };
      const offset = placed.value?.offsets[next++];
      if (placed.value === undefined || offset === undefined) throw new Error('invariant: inline body without offset');
      return { ...base, location: { kind: 'segment', segment: placed.value.segment, offset } };
    });
  }
}

async function syncFile(fh: FileHandle, path: string): Promise<void> {
  try {
    await fh.sync();
  } catch (err) {
    throw ioError('fsync', path, err);
  }
}
