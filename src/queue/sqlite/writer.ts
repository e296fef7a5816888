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
import type { Envelope, StoredMessage } from '../store.js';
import type { QueueError } from '../store.js';
import type { QueueId } from '../ids.js';
import { SerialMessageWriter } from '../writer-base.js';
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

/** Small bodies in memory until commit; past inlineLimit, written through to `bodies/<id>`. */
export class SqliteMessageWriter extends SerialMessageWriter {
  private chunks: Buffer[] = [];
  private spill: { fh: FileHandle; path: string } | undefined;

  constructor(id: QueueId, receivedAt: number, private readonly host: WriterHost) {
    super(id, receivedAt, host);
  }

  protected async append(chunk: Uint8Array): Promise<void> {
    if (this.spill !== undefined) await this.writeThrough([chunk]);
    else if (this.written + chunk.byteLength <= this.host.inlineLimit) this.buffer(chunk);
    else await this.spillWith(chunk);
  }

  protected finish(envelope: Envelope): Promise<StoredMessage> {
    return this.host.submit(this.toPending(envelope));
  }

  /** Drop buffered bytes and the spill file; never rejects (recovery reclaims what this misses). */
  protected async discard(): Promise<void> {
    this.chunks = [];
    if (this.spill !== undefined) {
      await this.spill.fh.close().catch(() => undefined);
      await removeFile(this.spill.path).catch(() => undefined);
    }
  }

  protected override async release(): Promise<void> {
    await this.spill?.fh.close().catch(() => undefined);
  }

  protected writeFailure(err: unknown): QueueError {
    return ioError('write body', this.host.bodyPath(this.id), err);
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
}
