/**
 * @module queue/postgres/writer
 * MessageWriter for the shared queue. Bytes are gathered into chunks of CHUNK_SIZE; each full
 * chunk is written to `bodies` at once (one relaxed INSERT, awaited: that is the backpressure),
 * so at most about one chunk of a message is ever in memory. What is left at commit (a whole
 * small message, or a large one's last partial chunk) travels with the group commit, in the same
 * transaction as the message row. Streamed chunks belong to no message until that transaction
 * commits; its WAL flush makes them durable too (see db.ts).
 *
 * Failure: a failed chunk write poisons the writer (commit then rejects QUEUE_IO); commit and
 * abort both delete whatever chunks were streamed (best effort: the orphan sweep at open takes
 * what a crash or a failed delete leaves). After commit/abort, write and commit reject
 * QUEUE_WRITER_DONE; once the store closes, QUEUE_CLOSED.
 */
import type { Envelope, StoredMessage } from '../store.js';
import { QueueError } from '../store.js';
import type { QueueId } from '../ids.js';
import { SerialMessageWriter } from '../writer-base.js';

/** Bytes per stored chunk: also the most readBody yields at once. */
export const CHUNK_SIZE = 128 * 1024;

/** A finished message handed to the committer. */
export interface PendingCommit {
  readonly id: QueueId;
  readonly receivedAt: number;
  readonly envelope: Envelope;
  readonly size: number;
  /** Chunks already in `bodies` (seq 0 .. streamed-1). */
  readonly streamed: number;
  /** The last chunk (may be empty when the body is empty or ends on a chunk boundary). */
  readonly tail: Buffer;
}

export interface WriterHost {
  assertOpen(): void;
  writeChunk(id: QueueId, seq: number, data: Buffer): Promise<void>;
  dropChunks(id: QueueId): Promise<void>;
  submit(pending: PendingCommit): Promise<StoredMessage>;
  finished(writer: PgMessageWriter): void;
}

/** Full chunks go to `bodies` as they fill; the tail travels with the group commit. */
export class PgMessageWriter extends SerialMessageWriter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private streamed = 0;

  constructor(id: QueueId, receivedAt: number, private readonly host: WriterHost) {
    super(id, receivedAt, host);
  }

  protected async append(chunk: Uint8Array): Promise<void> {
    let at = 0;
    while (at < chunk.byteLength) {
      const take = Math.min(CHUNK_SIZE - this.partBytes, chunk.byteLength - at);
      this.parts.push(Buffer.from(chunk.subarray(at, at + take)));
      this.partBytes += take;
      this.written += take;
      at += take;
      if (this.partBytes === CHUNK_SIZE) await this.flushChunk();
    }
  }

  protected finish(envelope: Envelope): Promise<StoredMessage> {
    const tail = Buffer.concat(this.parts, this.partBytes);
    this.parts = [];
    return this.host.submit({ id: this.id, receivedAt: this.receivedAt, envelope, size: this.written, streamed: this.streamed, tail });
  }

  protected async discard(): Promise<void> {
    this.parts = [];
    if (this.streamed > 0) await this.host.dropChunks(this.id).catch(() => undefined);
  }

  protected writeFailure(err: unknown): QueueError {
    return err instanceof QueueError ? err : new QueueError('QUEUE_IO', `message ${this.id}: write body chunk: ${String(err)}`, { cause: err });
  }

  private async flushChunk(): Promise<void> {
    const data = Buffer.concat(this.parts, this.partBytes);
    this.parts = [];
    this.partBytes = 0;
    await this.host.writeChunk(this.id, this.streamed, data);
    this.streamed += 1;
  }
}
