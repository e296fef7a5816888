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
import type { Envelope, MessageWriter, StoredMessage } from '../store.js';
import { QueueError } from '../store.js';
import type { QueueId } from '../ids.js';

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

type Phase = 'open' | 'committing' | 'done';

export class PgMessageWriter implements MessageWriter {
  private phase: Phase = 'open';
  private written = 0;
  private parts: Buffer[] = [];
  private partBytes = 0;
  private streamed = 0;
  private failure: QueueError | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly id: QueueId,
    private readonly receivedAt: number,
    private readonly host: WriterHost,
  ) {}

  get size(): number {
    return this.written;
  }

  write(chunk: Uint8Array): Promise<void> {
    try {
      this.assertWritable();
    } catch (err) {
      return Promise.reject(err);
    }
    const step = this.chain.then(() => this.append(chunk));
    this.chain = step.catch(() => undefined);
    return step;
  }

  async commit(envelope: Envelope): Promise<StoredMessage> {
    this.assertWritable();
    this.phase = 'committing';
    await this.chain;
    try {
      if (this.failure !== undefined) throw this.failure;
      const tail = Buffer.concat(this.parts, this.partBytes);
      this.parts = [];
      return await this.host.submit({ id: this.id, receivedAt: this.receivedAt, envelope, size: this.written, streamed: this.streamed, tail });
    } catch (err) {
      if (this.streamed > 0) await this.host.dropChunks(this.id);
      throw err;
    } finally {
      this.end();
    }
  }

  async abort(): Promise<void> {
    if (this.phase !== 'open') return;
    this.phase = 'done';
    await this.chain;
    this.parts = [];
    if (this.streamed > 0) await this.host.dropChunks(this.id);
    this.end();
  }

  private assertWritable(): void {
    this.host.assertOpen();
    if (this.phase !== 'open') {
      throw new QueueError('QUEUE_WRITER_DONE', `message ${this.id}: writer already ${this.phase === 'committing' ? 'committing' : 'ended'}`);
    }
  }

  private async append(chunk: Uint8Array): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
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

  private async flushChunk(): Promise<void> {
    const data = Buffer.concat(this.parts, this.partBytes);
    this.parts = [];
    this.partBytes = 0;
    try {
      await this.host.writeChunk(this.id, this.streamed, data);
      this.streamed += 1;
    } catch (err) {
      this.failure = err instanceof QueueError ? err : new QueueError('QUEUE_IO', `message ${this.id}: write body chunk: ${String(err)}`, { cause: err });
      throw this.failure;
    }
  }

  private end(): void {
    this.phase = 'done';
    this.host.finished(this);
  }
}
