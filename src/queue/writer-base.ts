/**
 * @module queue/writer-base
 * The lifecycle every backend's MessageWriter shares: writes chained one after another (so a
 * caller that forgets to await cannot interleave them), a failed write poisoning the writer,
 * open → committing → done, QUEUE_WRITER_DONE after commit or abort, QUEUE_CLOSED once the store
 * closes, and the store told when a writer ends. A backend supplies only where bytes go
 * (append), how a finished message is handed over (finish), what a failed or aborted message
 * leaves to clean up (discard) and what is released either way (release).
 *
 * Failure: an error thrown by append is kept (the first one) and rejects every later write and
 * the commit; finish's rejection is the commit's, after discard; discard and release never
 * reject (a backend swallows and leaves the rest to its recovery).
 */
import type { Envelope, MessageWriter, StoredMessage } from './store.js';
import { QueueError } from './store.js';
import type { QueueId } from './ids.js';

/** What the lifecycle needs from the store. */
export interface WriterLifecycleHost {
  /** Throws QUEUE_CLOSED once the store is closing. */
  assertOpen(): void;
  /** The writer ended (committed or aborted); the store stops tracking it. */
  finished(writer: MessageWriter): void;
}

type Phase = 'open' | 'committing' | 'done';

export abstract class SerialMessageWriter implements MessageWriter {
  private phase: Phase = 'open';
  private chain: Promise<void> = Promise.resolve();
  /** The first write failure: every later write and the commit reject with it. */
  private failure: QueueError | undefined;
  /** Body bytes accepted so far (the backend keeps it current in append). */
  protected written = 0;

  constructor(
    readonly id: QueueId,
    protected readonly receivedAt: number,
    private readonly lifecycleHost: WriterLifecycleHost,
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
    const step = this.chain.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      try {
        await this.append(chunk);
      } catch (err) {
        this.failure = this.writeFailure(err);
        throw this.failure;
      }
    });
    this.chain = step.catch(() => undefined);
    return step;
  }

  async commit(envelope: Envelope): Promise<StoredMessage> {
    this.assertWritable();
    this.phase = 'committing';
    await this.chain;
    try {
      if (this.failure !== undefined) throw this.failure;
      return await this.finish(envelope);
    } catch (err) {
      await this.discard();
      throw err;
    } finally {
      await this.release();
      this.end();
    }
  }

  async abort(): Promise<void> {
    if (this.phase !== 'open') return;
    this.phase = 'done';
    await this.chain;
    await this.discard();
    await this.release();
    this.end();
  }

  /** Take these bytes (a copy: the caller may reuse its chunk once this resolves). */
  protected abstract append(chunk: Uint8Array): Promise<void>;
  /** The whole body is written: hand the message over and resolve once it is durable. */
  protected abstract finish(envelope: Envelope): Promise<StoredMessage>;
  /** Forget what was written (a failed commit, an abort). Never rejects. */
  protected abstract discard(): Promise<void>;
  /** Release handles, committed or not. Never rejects. */
  protected release(): Promise<void> {
    return Promise.resolve();
  }
  /** An append's error as the QueueError every later call rejects with. */
  protected abstract writeFailure(err: unknown): QueueError;

  private assertWritable(): void {
    this.lifecycleHost.assertOpen();
    if (this.phase !== 'open') {
      throw new QueueError('QUEUE_WRITER_DONE', `message ${this.id}: writer already ${this.phase === 'committing' ? 'committing' : 'ended'}`);
    }
  }

  private end(): void {
    this.phase = 'done';
    this.lifecycleHost.finished(this);
  }
}
