/**
 * @module queue/sqlite/wal-sync
 * Durability of SQLite commits without an fsync on the event loop. The connection runs WAL with
 * synchronous=NORMAL: a commit is write()s into the `-wal` file and returns at once, durable
 * against a process kill (the page cache survives) but not yet against a power cut. barrier()
 * then fdatasyncs that file on the threadpool; when it resolves, every transaction committed
 * before the call is on stable storage, exactly what synchronous=FULL would have given, and no
 * transaction ever held the event loop for a flush.
 *
 * Group sync: every barrier asked in one event-loop turn shares one flush, started at the end of
 * the turn; calls made while a flush runs share the next one (a flush that started before a
 * commit cannot vouch for it). So N concurrent commits cost one or two fdatasyncs, whatever N.
 *
 * Why this is sound: an fsync applies to the file, not the descriptor, and covers every write
 * made before it was called. A checkpoint that moves frames into the main database (run by
 * SQLite inside a commit, on this same thread) fsyncs the WAL and then the database itself before
 * the WAL is reused, so a frame overwritten by a WAL restart was already durable elsewhere. The
 * file exists for the whole life of the connection: locking_mode=EXCLUSIVE and the default
 * journal_size_limit mean SQLite neither deletes nor truncates it until close.
 *
 * Failure: an fdatasync error rejects every waiter of that flush with the error, and every later
 * barrier too (`failed`): after a failed fsync the kernel may have dropped the dirty pages, so
 * nothing written since can be vouched for; the store must stop acknowledging (PostgreSQL's
 * "fsyncgate" lesson). Trusts that only its own connection writes the file.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

export class WalSync {
  private handle: FileHandle | undefined;
  /** The flush running now, if any. */
  private running: Promise<void> | undefined;
  /** The flush not started yet, shared by everyone who asked since the last one started. */
  private next: Promise<void> | undefined;
  private failure: unknown;
  private closed = false;
  /** fdatasync calls made: for tests and stats (N barriers, far fewer flushes). */
  flushes = 0;

  constructor(private readonly walPath: string) {}

  /** Resolves once every commit made before this call is on stable storage. */
  barrier(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error(`${this.walPath}: closed`));
    // A flush not yet started covers this call; one already running does not.
    this.next ??= this.schedule();
    return this.next;
  }

  /** Waits for flushes in flight, then closes the descriptor; later barriers reject. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([this.running, this.next]);
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }

  /**
   * The next flush starts at the end of this event-loop turn (every commit of the turn shares
   * it), and never before the running one ends (it could not vouch for later writes).
   */
  private async schedule(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await this.running?.catch(() => undefined);
    this.next = undefined;
    const flushing = this.flush();
    this.running = flushing;
    try {
      await flushing;
    } finally {
      if (this.running === flushing) this.running = undefined;
    }
  }

  private async flush(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    try {
      // Opened on first use: SQLite creates the file at the first write, not at open.
      this.handle ??= await open(this.walPath, 'r');
      this.flushes++;
      await this.handle.datasync();
    } catch (err) {
      this.failure ??= err;
      throw err;
    }
  }
}
