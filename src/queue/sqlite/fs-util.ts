/**
 * @module queue/sqlite/fs-util
 * The few file-system moves the spool needs, each turning a Node error into a QueueError that
 * names the operation and the path (QUEUE_IO), so a log line says what failed where.
 *
 * Cost: each helper is one or a few libuv threadpool calls; none blocks the event loop.
 * Failure: rejects QUEUE_IO; ENOENT is reported as such (`isMissing`) for callers that branch on it.
 * Trusts: Linux semantics (fsync on a directory handle makes its entries durable).
 */
import { open, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { QueueError } from '../store.js';

export function ioError(what: string, path: string, err: unknown): QueueError {
  if (err instanceof QueueError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new QueueError('QUEUE_IO', `${what} ${path}: ${detail}`, { cause: err });
}

export function isMissing(err: unknown): boolean {
  const cause = err instanceof QueueError ? err.cause : err;
  return cause instanceof Error && 'code' in cause && cause.code === 'ENOENT';
}

/** Make a directory's entries (creates, renames, unlinks) durable. */
export async function fsyncDir(path: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    await fh.sync();
  } catch (err) {
    throw ioError('fsync directory', path, err);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Write every byte of `buffers` at `position`, looping over short writes. */
export async function writeAll(fh: FileHandle, buffers: readonly Uint8Array[], position: number, path: string): Promise<number> {
  let pending = buffers.filter((b) => b.byteLength > 0);
  let at = position;
  try {
    while (pending.length > 0) {
      const { bytesWritten } = await fh.writev(pending, at);
      at += bytesWritten;
      pending = dropWritten(pending, bytesWritten);
    }
  } catch (err) {
    throw ioError('write', path, err);
  }
  return at - position;
}

function dropWritten(buffers: readonly Uint8Array[], written: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  let skip = written;
  for (const b of buffers) {
    if (skip >= b.byteLength) {
      skip -= b.byteLength;
      continue;
    }
    rest.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return rest;
}

/** Remove a file; a file already gone counts as removed. */
export async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (!isMissing(err)) throw ioError('unlink', path, err);
  }
}
