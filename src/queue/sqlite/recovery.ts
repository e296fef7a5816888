/**
 * @module queue/sqlite/recovery
 * Runs once at open, before any new work. SQLite is the truth and a body is durable before its
 * row commits, so every file state a crash can leave is one of: a committed body (keep), a
 * half-written segment tail or a whole batch whose transaction never committed (cut off), a spill
 * file of an uncommitted or aborted message (delete), or a segment no row uses (delete).
 *
 * What it does: first turns every RFC 1047 window mark left behind (markInWindow with no
 * recordAttempt after it: the process died after end-of-data was sent, or about to send it) into
 * an `ambiguous` recipient with a history entry (schedule-db resolveWindows; reported in
 * `ambiguous` so main logs each one), then clears every lease (this store is single-process, so whatever was leased was in
 * flight in a process that is gone: it is due again at once; see store.ts), truncates each
 * segment to the end of its last committed record (fsyncing it), deletes segments and body files
 * no committed row references, and checks that every row's body is there and long enough. A row
 * whose body is missing or short is NOT deleted (that would lose an accepted message silently):
 * it is listed in the report as QUEUE_CORRUPT, reads of it reject QUEUE_CORRUPT, and the operator
 * or qmgr decides. It never crashes on what it finds.
 *
 * Cost: one indexed read of the marked recipients (partial index recipients_in_window; a durable
 * transaction only when there are some), one UPDATE over the leased rows (partial index messages_leased), one aggregate query per
 * segment set, one indexed query per short segment, a stat per segment and per spilled body
 * file, plus unlinks/truncates for what it discards. Proportional to the number of files (and
 * of leases left behind), not of bytes.
 * Failure: an I/O error while discarding rejects QUEUE_IO; open() then fails and nothing was lost.
 */
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { QueueId } from '../ids.js';
import { isQueueId } from '../ids.js';
import type { IndexDb, SegmentUse } from './index-db.js';
import type { AmbiguousAtRestart } from './schedule-db.js';
import { fsyncDir, ioError, removeFile } from './fs-util.js';
import { fileSize, parseSegmentName } from './segments.js';

export interface CorruptMessage {
  readonly id: QueueId;
  readonly code: 'QUEUE_CORRUPT';
  readonly reason: string;
}

export type { AmbiguousAtRestart } from './schedule-db.js';

export interface RecoveryReport {
  /** Leases found at open (work in flight when the previous process ended), cleared: due again at once. */
  readonly releasedLeases: number;
  /**
   * Recipients the previous process left inside the RFC 1047 window (marked, never recorded):
   * now `ambiguous`, with a history entry (note 'ambiguous-at-restart'). Each may have been
   * delivered already; it will be delivered again (invariant 3's logged exception).
   */
  readonly ambiguous: readonly AmbiguousAtRestart[];
  /** Messages (rows) in the index after recovery, corrupt ones included. */
  readonly keptMessages: number;
  /** Segment and body files that no committed row referenced, deleted. */
  readonly discardedFiles: number;
  readonly discardedBytes: number;
  /** Segments cut back to the end of their last committed record, and the bytes cut. */
  readonly truncatedSegments: number;
  readonly truncatedBytes: number;
  /** Rows whose body is missing or short: kept, reported, unreadable. */
  readonly corrupt: readonly CorruptMessage[];
  /** The segment number the new active segment gets. */
  readonly nextSegment: number;
  readonly durationMs: number;
}

interface Tally {
  discardedFiles: number;
  discardedBytes: number;
  truncatedSegments: number;
  truncatedBytes: number;
  corrupt: CorruptMessage[];
}

export interface Recovered {
  readonly report: RecoveryReport;
  /** Live records per segment, for segment GC. */
  readonly live: Map<number, number>;
}

export async function recover(index: IndexDb, segmentsDir: string, bodiesDir: string, now: () => number): Promise<Recovered> {
  const started = now();
  // Before the leases go: a mark is the trace of a run that died in the window.
  const ambiguous = index.schedule.resolveWindows(now());
  const releasedLeases = index.schedule.clearLeases();
  const tally: Tally = { discardedFiles: 0, discardedBytes: 0, truncatedSegments: 0, truncatedBytes: 0, corrupt: [] };
  const use = new Map(index.segmentUse().map((u) => [u.segment, u]));
  const seen = await recoverSegments(index, segmentsDir, use, tally);
  await recoverBodies(index, bodiesDir, tally);
  if (tally.discardedFiles > 0) await Promise.all([fsyncDir(segmentsDir), fsyncDir(bodiesDir)]);
  const highest = Math.max(0, ...seen, ...use.keys());
  const report: RecoveryReport = {
    releasedLeases,
    ambiguous,
    keptMessages: index.countMessages(),
    ...tally,
    nextSegment: highest + 1,
    durationMs: now() - started,
  };
  return { report, live: new Map([...use].map(([no, u]) => [no, u.count])) };
}

/** Returns every segment number found on disk (used or not), so new numbers never repeat them. */
async function recoverSegments(index: IndexDb, dir: string, use: Map<number, SegmentUse>, tally: Tally): Promise<Set<number>> {
  const seen = new Set<number>();
  for (const name of await listDir(dir)) {
    const no = parseSegmentName(name);
    if (no === undefined) continue; // not ours: leave it for a human
    seen.add(no);
    const path = join(dir, name);
    const size = (await fileSize(path)) ?? 0;
    const u = use.get(no);
    if (u === undefined) await discard(path, size, tally);
    else if (size > u.end) await truncate(path, size, u.end, tally);
    else if (size < u.end) markShort(index, no, size, tally);
  }
  for (const no of use.keys()) {
    if (!seen.has(no)) markShort(index, no, 0, tally);
  }
  return seen;
}

async function recoverBodies(index: IndexDb, dir: string, tally: Tally): Promise<void> {
  const expected = new Map(index.fileBodies().map((b) => [b.id as string, b.size]));
  for (const name of await listDir(dir)) {
    const path = join(dir, name);
    const size = await fileSize(path);
    const want = expected.get(name);
    expected.delete(name);
    if (size === undefined) continue;
    // Only names this store could have written are its to delete, as in segments/.
    if (want === undefined) {
      if (isQueueId(name)) await discard(path, size, tally);
    } else if (size !== want && isQueueId(name)) {
      tally.corrupt.push({ id: name, code: 'QUEUE_CORRUPT', reason: `${path}: ${size} bytes on disk, ${want} committed` });
    }
  }
  for (const id of expected.keys()) {
    if (isQueueId(id)) tally.corrupt.push({ id, code: 'QUEUE_CORRUPT', reason: `${join(dir, id)}: body file missing` });
  }
}

function markShort(index: IndexDb, segment: number, size: number, tally: Tally): void {
  for (const b of index.segmentBodies(segment)) {
    if (b.offset + b.size > size) {
      tally.corrupt.push({
        id: b.id,
        code: 'QUEUE_CORRUPT',
        reason: `segment ${segment}: body at ${b.offset}+${b.size} but the file holds ${size} bytes`,
      });
    }
  }
}

async function discard(path: string, size: number, tally: Tally): Promise<void> {
  await removeFile(path);
  tally.discardedFiles += 1;
  tally.discardedBytes += size;
}

async function truncate(path: string, size: number, end: number, tally: Tally): Promise<void> {
  try {
    const fh = await open(path, 'r+');
    try {
      await fh.truncate(end);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw ioError('truncate segment', path, err);
  }
  tally.truncatedSegments += 1;
  tally.truncatedBytes += size - end;
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    throw ioError('list', dir, err);
  }
}
