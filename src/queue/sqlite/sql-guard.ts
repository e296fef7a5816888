/**
 * @module queue/sqlite/sql-guard
 * One rule for every SQLite call: driver errors become QueueError QUEUE_IO naming the database
 * path (SQLITE_BUSY as "in use by another process"); QueueErrors pass through unchanged.
 * Cost: a try/catch around the call.
 */
import { QueueError } from '../store.js';

/** Map driver errors to QUEUE_IO with the database path; QueueErrors pass through. */
export function guard<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof QueueError) throw err;
    const busy = err instanceof Error && 'code' in err && err.code === 'SQLITE_BUSY';
    const what = busy ? 'in use by another process' : err instanceof Error ? err.message : String(err);
    throw new QueueError('QUEUE_IO', `${path}: ${what}`, { cause: err });
  }
}
