/**
 * @module util/atomic-file
 * Replace a file so that a reader, or the file system after a crash, sees either the old
 * content or the new, never a mix or a truncated file (chasquid's safeio): write a temporary
 * file beside the target, fsync it, rename it over the target, fsync the directory.
 *
 * Who calls it: the CLI writing the AUTH user file while a server may be reading it.
 * Failure: rejects with the Node error (its message names the path); the temporary file is
 * removed and the target is untouched. Trusts: POSIX rename atomicity within one directory.
 */
import { open, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx', mode);
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
