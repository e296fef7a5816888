/**
 * @module queue/sqlite
 * The embedded queue backend's public surface: openSqliteStore() and its types. main.ts (and the
 * offline CLI) are the only callers; everyone else sees a QueueStore.
 *
 * openSqliteStore() costs: mkdir of the layout, open + migrate the index (migration 002 rewrites
 * each row of a 001 spool once), recovery (see recovery.ts; proportional to the number of files),
 * one new segment file, a few directory fsyncs. It resolves only when the spool is consistent:
 * every committed message readable or listed as corrupt in `recovery`, every uncommitted byte
 * gone, every lease cleared (work in flight when the last process ended is due again at once;
 * `recovery.releasedLeases` counts it), and every recipient left inside the RFC 1047 window made
 * `ambiguous` (`recovery.ambiguous` lists them).
 *
 * Failure: rejects QUEUE_IO (with the path) when the directory cannot be created or read, when
 * another process holds the spool, or when recovery cannot discard something; QUEUE_CORRUPT when
 * the index has a schema newer than this build. A failed open leaves the spool as it found it,
 * apart from discards recovery had already made (which are always safe to make).
 * Trusts: `dir` is a local file system with POSIX fsync semantics.
 */
import { mkdir, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GroupCommitter } from './committer.js';
import type { CommitStats } from './committer.js';
import { fsyncDir, ioError } from './fs-util.js';
import { IndexDb } from './index-db.js';
import { DEFAULT_RECENT_BODY_BYTES, RecentBodies } from './recent-bodies.js';
import { recover } from './recovery.js';
import type { RecoveryReport } from './recovery.js';
import { SegmentLog } from './segments.js';
import { SqliteQueueStore } from './store.js';

export { SqliteQueueStore } from './store.js';
export type { AmbiguousAtRestart, RecoveryReport, CorruptMessage } from './recovery.js';
export { MIGRATIONS } from './migrations.js';
export type { Migration } from './migrations.js';

export interface SqliteStoreOptions {
  /** The spool directory; created if missing. */
  readonly dir: string;
  readonly clock?: { now(): number };
  /** Bodies up to this many bytes go to the shared segment; larger ones get their own file. Default 128 KiB. */
  readonly inlineLimit?: number;
  /** Start a new segment once the active one has reached this size. Default 64 MiB. */
  readonly segmentSize?: number;
  /** Most commits flushed together. Default 512. */
  readonly maxBatch?: number;
  /**
   * Bytes of just-committed segment bodies kept in memory for their first delivery
   * (recent-bodies.ts); 0 turns it off. Default 4 MiB.
   */
  readonly recentBodyBytes?: number;
  /** Called once with what recovery found, before openSqliteStore resolves. */
  readonly onRecover?: (report: RecoveryReport) => void;
}

export const DEFAULT_INLINE_LIMIT = 128 * 1024;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024;
export const DEFAULT_MAX_BATCH = 512;

export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteQueueStore> {
  const dir = resolve(options.dir);
  const segmentsDir = join(dir, 'segments');
  const bodiesDir = join(dir, 'bodies');
  await makeLayout(dir, segmentsDir, bodiesDir);
  const now = options.clock ? () => options.clock?.now() ?? Date.now() : () => Date.now();
  const index = IndexDb.open(join(dir, 'index.sqlite'));
  let segments: SegmentLog | undefined;
  let bodiesHandle: FileHandle | undefined;
  try {
    const { report, live } = await recover(index, segmentsDir, bodiesDir, now);
    index.startWalBarrier();
    segments = await SegmentLog.start(segmentsDir, options.segmentSize ?? DEFAULT_SEGMENT_SIZE, live, report.nextSegment);
    bodiesHandle = await open(bodiesDir, 'r').catch((err: unknown) => {
      throw ioError('open', bodiesDir, err);
    });
    const stats: CommitStats = { commits: 0, flushes: 0 };
    const recent = new RecentBodies(Math.max(0, options.recentBodyBytes ?? DEFAULT_RECENT_BODY_BYTES));
    const committer = new GroupCommitter(index, segments, bodiesDir, bodiesHandle, positive(options.maxBatch, DEFAULT_MAX_BATCH), stats, recent);
    const store = new SqliteQueueStore({
      dir, bodiesDir, now, index, segments, committer, stats, bodiesHandle, recent,
      inlineLimit: Math.max(0, options.inlineLimit ?? DEFAULT_INLINE_LIMIT),
      recovery: report,
    });
    options.onRecover?.(report);
    return store;
  } catch (err) {
    await segments?.close();
    await bodiesHandle?.close().catch(() => undefined);
    await index.close();
    throw err;
  }
}

async function makeLayout(dir: string, segmentsDir: string, bodiesDir: string): Promise<void> {
  try {
    await mkdir(segmentsDir, { recursive: true });
    await mkdir(bodiesDir, { recursive: true });
  } catch (err) {
    throw ioError('create spool directory', dir, err);
  }
  // The subdirectories must survive a crash before anything inside them is trusted.
  await fsyncDir(dir);
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value >= 1 ? Math.floor(value) : fallback;
}
