/**
 * @module queue/sqlite/writer
 * MessageWriter for the SQLite spool. A body up to inlineLimit is held in memory (copied, since the
 * caller may reuse its chunk) and goes to the shared segment at commit. The write that would pass
 * the limit spills: `bodies/<id>` is created, the buffered bytes and every later chunk are written
 * through, so at most inlineLimit bytes of a message are ever in memory.
 *
 * Costs: write() below the limit is a memcpy; above it, one write syscall on the threadpool, and
 * the promise resolves when the OS has the bytes (that is the backpressure). commit() costs one
 * share of a group flush (see committer.ts). abort() unlinks the spill file, if any.
 *
 * Failure: a failed spill write rejects QUEUE_IO and poisons the writer (commit then rejects the
 * same error); commit failures reject QUEUE_IO and remove the spill file, so nothing is left.
 * After commit/abort, write and commit reject QUEUE_WRITER_DONE; once the store closes, QUEUE_CLOSED.
 * Trusts: the caller awaits each write (writes are chained anyway, so misuse cannot interleave).
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Envelope, MessageWriter, StoredMessage } from '../store.js';
import { QueueError } from '../store.js';
import type { QueueId } from '../ids.js';
import { ioError, removeFile, writeAll } from './fs-util.js';

/** A message handed to the committer: its body is complete and, if spilled, not yet fsynced. */
export interface PendingCommit {
  readonly id: QueueId;
  readonly receivedAt: number;
  readonly envelope: Envelope;
  readonly size: number;
  readonly body: { readonly kind: 'inline'; readonly bytes: Uint8Array } | { readonly kind: 'file'; readonly fh: FileHandle; readonly path: string };
}

/** What a writer needs from its store. */
export interface WriterHost {
  readonly inlineLimit: number;
  bodyPath(id: QueueId): string;
  /** Throws QUEUE_CLOSED once the store is closing. */
  assertOpen(): void;
  submit(pending: PendingCommit): Promise<StoredMessage>;
  /** The writer ended (committed or aborted); the store stops tracking it. */
  finished(writer: SqliteMessageWriter): void;
}

type Phase = 'open' | 'committing' | 'done';

export class SqliteMessageWriter implements MessageWriter {
  private phase: Phase = 'open';
  private written = 0;
  private chunks: Buffer[] = [];
  private spill: { fh: FileHandle; path: string } | undefined;
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
      return await this.host.submit(this.toPending(envelope));
    } catch (err) {
      await this.discard();
      throw err;
    } finally {
      await this.spill?.fh.close().catch(() => undefined);
      this.end();
    }
  }

  async abort(): Promise<void> {
    if (this.phase !== 'open') return;
    this.phase = 'done';
    await this.chain;
    await this.discard();
    await this.spill?.fh.close().catch(() => undefined);
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
    try {
      if (this.spill !== undefined) await this.writeThrough([chunk]);
      else if (this.written + chunk.byteLength <= this.host.inlineLimit) this.buffer(chunk);
      else await this.spillWith(chunk);
    } catch (err) {
      this.failure = ioError('write body', this.host.bodyPath(this.id), err);
      throw this.failure;
    }
  }

  private buffer(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(Buffer.from(chunk));
    this.written += chunk.byteLength;
  }

  private async spillWith(chunk: Uint8Array): Promise<void> {
    const path = this.host.bodyPath(this.id);
    this.spill = { fh: await open(path, 'wx'), path };
    const buffered = this.chunks;
    this.chunks = [];
    this.written = 0;
    await this.writeThrough([...buffered, chunk]);
  }

  private async writeThrough(buffers: readonly Uint8Array[]): Promise<void> {
    const spill = this.spill;
    if (spill === undefined) throw new Error('invariant: writeThrough without a spill file');
    this.written += await writeAll(spill.fh, buffers, this.written, spill.path);
  }

  private toPending(envelope: Envelope): PendingCommit {
    const body: PendingCommit['body'] = this.spill === undefined
      ? { kind: 'inline', bytes: Buffer.concat(this.chunks, this.written) }
      : { kind: 'file', fh: this.spill.fh, path: this.spill.path };
    this.chunks = [];
    return { id: this.id, receivedAt: this.receivedAt, envelope, size: this.written, body };
  }

  /** Drop buffered bytes and the spill file; never rejects (recovery reclaims what this misses). */
  private async discard(): Promise<void> {
    this.chunks = [];
    if (this.spill !== undefined) {
      await this.spill.fh.close().catch(() => undefined);
      await removeFile(this.spill.path).catch(() => undefined);
    }
  }

  private end(): void {
    this.phase = 'done';
    this.host.finished(this);
  }
}
