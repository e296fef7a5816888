/**
 * @module queue/sqlite/recent-bodies
 * The bytes of just-committed segment bodies, kept for the delivery that usually follows within
 * milliseconds, so it reads them from memory instead of a pread through the threadpool. A relay
 * profile (`npm run bench -- relay --profile`, docs/benchmarks.md) put that read at about 5 % of
 * the event loop: the promise round trip through the threadpool, not the copy.
 *
 * Only segment bodies (at most inlineLimit bytes each), and only ones already held whole for the
 * group commit's writev: nothing is buffered that the accept path did not already hold. Bounded
 * by `budget` bytes in total (oldest dropped first), so a smart host that is down cannot make it
 * grow; a body is handed out once (take) and then forgotten: a retry, a second host or a DSN reads
 * the spool as before. It is a cache of the file, never the source of truth: an entry is added
 * once the body is durable and its row committed (the moment a claim can see it; the row's own
 * fsync, the WAL barrier, follows, as for every claim), and purge forgets it.
 *
 * Cost: a Map insert per commit, a Map delete per delivery. Trust: the buffers are the writer's
 * own copies (writer.ts), never a caller's.
 */
import type { QueueId } from '../ids.js';

/** Default total bytes kept (about 400 messages of 10 KiB in flight between commit and delivery). */
export const DEFAULT_RECENT_BODY_BYTES = 4 * 1024 * 1024;

export class RecentBodies {
  readonly #bodies = new Map<QueueId, Uint8Array>();
  #bytes = 0;

  constructor(private readonly budget: number) {}

  /** Bytes held now: for tests and stats. */
  get bytes(): number {
    return this.#bytes;
  }

  put(id: QueueId, body: Uint8Array): void {
    if (body.byteLength === 0 || body.byteLength > this.budget) return;
    this.forget(id);
    this.#bodies.set(id, body);
    this.#bytes += body.byteLength;
    // Map iteration is insertion order: the first entries are the oldest.
    for (const [oldest, bytes] of this.#bodies) {
      if (this.#bytes <= this.budget) break;
      this.#bodies.delete(oldest);
      this.#bytes -= bytes.byteLength;
    }
  }

  /** The body, once; undefined when it was never kept, was evicted, or was taken already. */
  take(id: QueueId): Uint8Array | undefined {
    const body = this.#bodies.get(id);
    if (body !== undefined) this.forget(id);
    return body;
  }

  forget(id: QueueId): void {
    const body = this.#bodies.get(id);
    if (body === undefined) return;
    this.#bodies.delete(id);
    this.#bytes -= body.byteLength;
  }

  clear(): void {
    this.#bodies.clear();
    this.#bytes = 0;
  }
}
