/**
 * @module queue/sqlite/segments
 * Append-only segment files (`segments/NNNNNNNN.seg`) holding small bodies back to back. A record
 * is just the body bytes; where it starts and how long it is lives in SQLite, which is the truth.
 * Only the committer appends, one batch at a time, so there is never more than one write in
 * flight and offsets are assigned without locks.
 *
 * Costs: appendDurable() is one writev of the whole batch plus one fdatasync, whatever the batch
 * size. Rotation (when the active segment has reached segmentSize) is a file create plus one fsync
 * of segments/, once per segment. forget() is an unlink when a non-active segment empties.
 *
 * Failure: a failed write or fdatasync poisons the active segment: its page-cache state is no
 * longer known (after a failed fsync Linux may have dropped the dirty pages), so the next batch
 * rotates to a fresh file instead of trusting it. Bytes past the last committed record are
 * truncated by recovery at the next open. Everything rejects QUEUE_IO with the path.
 *
 * Trusts: the live counts it is given at start (from SQLite), and that every appended record
 * whose row does not commit, or is later deleted, is handed to forget() exactly once.
 */
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { QueueError } from '../store.js';
import { fsyncDir, ioError, removeFile, writeAll } from './fs-util.js';

const NAME_RE = /^(\d{8})\.seg$/;

export function segmentName(no: number): string {
  return `${String(no).padStart(8, '0')}.seg`;
}

/** The segment number of a file name, or undefined for anything that is not a segment. */
export function parseSegmentName(name: string): number | undefined {
  const m = NAME_RE.exec(name);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

interface Active {
  readonly no: number;
  /** Opened read-write: deliveries read fresh bodies through it without an open per message. */
  readonly fh: FileHandle;
  size: number;
}

/** A handle readers are using; closed when the last reader ends, unless it is the active one. */
interface Reading {
  readonly fh: FileHandle;
  users: number;
}

export interface Placement {
  readonly segment: number;
  readonly offsets: readonly number[];
}

export class SegmentLog {
  private poisoned = false;
  /** Segments being read now, by number (the active segment's entry shares its write handle). */
  private readonly reading = new Map<number, Reading>();

  private constructor(
    private readonly dir: string,
    private readonly segmentSize: number,
    private readonly live: Map<number, number>,
    private active: Active,
    private nextNo: number,
  ) {}

  /** Always begins a fresh segment: old ones were truncated by recovery and are never appended to. */
  static async start(dir: string, segmentSize: number, live: Map<number, number>, firstNo: number): Promise<SegmentLog> {
    const active = await createSegment(dir, firstNo);
    return new SegmentLog(dir, segmentSize, live, active, firstNo + 1);
  }

  path(no: number): string {
    return join(this.dir, segmentName(no));
  }

  get activeSegment(): number {
    return this.active.no;
  }

  /** Append the bodies as one contiguous run and make them durable; returns where each landed. */
  async appendDurable(bodies: readonly Uint8Array[]): Promise<Placement> {
    if (this.poisoned || this.active.size >= this.segmentSize) await this.rotate();
    const { no, fh } = this.active;
    const start = this.active.size;
    const offsets: number[] = [];
    let total = 0;
    for (const b of bodies) {
      offsets.push(start + total);
      total += b.byteLength;
    }
    if (total > 0) {
      this.poisoned = true;
      await writeAll(fh, bodies, start, this.path(no));
      await fh.datasync().catch((err: unknown) => {
        throw ioError('fdatasync', this.path(no), err);
      });
      this.poisoned = false;
      this.active.size = start + total;
    }
    // Counted live from now, before their rows commit: a rotation by the next batch must not
    // delete the segment under rows that are about to point into it. forget() undoes this.
    this.live.set(no, (this.live.get(no) ?? 0) + bodies.length);
    return { segment: no, offsets };
  }

  /**
   * The `size` bytes at `offset` of segment `no`, in chunks of at most `chunk` bytes, by
   * positional reads. The active segment is read through its open handle (the common case: a
   * delivery right behind its commit costs one pread, no open or close); an older segment is
   * opened once for all its concurrent readers. Each chunk is a fresh buffer the caller may keep.
   * A file shorter than the range rejects QUEUE_CORRUPT; I/O errors QUEUE_IO (ENOENT included:
   * the caller tells a purge from corruption).
   */
  async *read(no: number, offset: number, size: number, chunk: number): AsyncGenerator<Uint8Array, void, undefined> {
    const path = this.path(no);
    const reading = await this.acquire(no, path);
    try {
      let done = 0;
      while (done < size) {
        const want = Math.min(chunk, size - done);
        const buffer = Buffer.allocUnsafe(want);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await reading.fh.read(buffer, got, want - got, offset + done + got).catch((err: unknown) => {
            throw ioError('read', path, err);
          });
          if (bytesRead === 0) throw new QueueError('QUEUE_CORRUPT', `${path} ends at ${offset + done + got}, before ${offset + size}`);
          got += bytesRead;
        }
        done += want;
        yield buffer;
      }
    } finally {
      await this.releaseReader(no, reading);
    }
  }

  private async acquire(no: number, path: string): Promise<Reading> {
    const existing = this.reading.get(no) ?? (no === this.active.no ? this.track(no, this.active.fh) : undefined);
    if (existing !== undefined) {
      existing.users++;
      return existing;
    }
    const fh = await open(path, 'r').catch((err: unknown) => {
      throw ioError('open', path, err);
    });
    // Another reader may have opened it meanwhile: share theirs.
    const raced = this.reading.get(no);
    if (raced !== undefined) {
      raced.users++; // before any await: the other reader may end meanwhile and close its handle
      await fh.close().catch(() => undefined);
      return raced;
    }
    const entry = this.track(no, fh);
    entry.users++;
    return entry;
  }

  private track(no: number, fh: FileHandle): Reading {
    const entry: Reading = { fh, users: 0 };
    this.reading.set(no, entry);
    return entry;
  }

  private async releaseReader(no: number, entry: Reading): Promise<void> {
    entry.users--;
    if (entry.users > 0 || this.reading.get(no) !== entry) return;
    this.reading.delete(no);
    // The active segment's handle is the writer's; rotate() closes it once nobody reads it.
    if (no === this.active.no && entry.fh === this.active.fh) return;
    await entry.fh.close().catch(() => undefined);
  }

  /**
   * `n` records of segment `no` lost their rows (purged, or their batch never committed). When a
   * non-active segment holds none, delete it. A failed unlink is not the caller's failure (the
   * rows are gone): recovery reclaims the file at the next open.
   */
  async forget(no: number, n = 1): Promise<void> {
    const left = (this.live.get(no) ?? 0) - n;
    if (left > 0) {
      this.live.set(no, left);
      return;
    }
    this.live.delete(no);
    if (no !== this.active.no) await removeFile(this.path(no)).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.active.fh.close().catch(() => undefined);
    // Readers still open (a store closing under a delivery) end with QUEUE_IO on their next read.
    for (const entry of this.reading.values()) if (entry.fh !== this.active.fh) await entry.fh.close().catch(() => undefined);
    this.reading.clear();
  }

  private async rotate(): Promise<void> {
    // Burn the number first: if creating it fails, the next attempt must not collide with a half-made file.
    const no = this.nextNo++;
    const next = await createSegment(this.dir, no);
    const old = this.active;
    this.active = next;
    this.poisoned = false;
    // Readers of the old segment keep its handle; the last of them closes it (releaseReader).
    const readers = this.reading.get(old.no);
    if (readers === undefined || readers.fh !== old.fh) await old.fh.close().catch(() => undefined);
    if ((this.live.get(old.no) ?? 0) === 0) await removeFile(this.path(old.no)).catch(() => undefined);
  }
}

async function createSegment(dir: string, no: number): Promise<Active> {
  const path = join(dir, segmentName(no));
  let fh: FileHandle;
  try {
    // 'wx+': a segment is never reused (an existing file with this number is someone else's);
    // readable too, so deliveries of fresh bodies read through this handle (read()).
    fh = await open(path, 'wx+');
  } catch (err) {
    throw ioError('create segment', path, err);
  }
  try {
    // The directory entry must be durable before any row can point into this file.
    await fsyncDir(dir);
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
  return { no, fh, size: 0 };
}

/** Size of a file, or undefined when it does not exist. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return undefined;
    throw ioError('stat', path, err);
  }
}
