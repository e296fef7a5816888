/**
 * @module queue/store
 * The storage seam. Every queue backend (the embedded SQLite+spool store, later PostgreSQL)
 * implements QueueStore, and every backend runs the same conformance suite (conformance.ts).
 *
 * Who calls it: cleanup/ (to enqueue accepted mail), later qmgr/ (to claim and record work) and
 * admin/ (to read and steer). It trusts its callers for envelope validity (smtpd parsed it) and
 * trusts nothing about process lifetime: any instant may be a crash, and open() recovers.
 *
 * The durability contract (DESIGN.md invariant 2): MessageWriter.commit() resolves only after
 * the body and the envelope are on stable storage. A crash before that leaves nothing visible
 * after recovery; a crash after it loses nothing. Backends group concurrent commits into one
 * flush so durability does not cost a disk flush per message.
 */
import type { BodyType, DsnNotify, DsnRet } from '../protocol/index.js';
import type { QueueId } from './ids.js';

export type { QueueId } from './ids.js';

/** The state of one recipient of one message (DESIGN.md §4). */
export type RecipientState = 'queued' | 'deferred' | 'held' | 'ambiguous' | 'delivered' | 'bounced' | 'expired' | 'deleted';

export interface EnvelopeRecipient {
  /** The forward-path as `local@domain`. */
  readonly address: string;
  /** DSN NOTIFY (RFC 3461); absent means the default (FAILURE, and DELAY at the MTA's choice). */
  readonly notify?: readonly DsnNotify[] | 'NEVER';
  /** DSN ORCPT as `addr-type;address`. */
  readonly orcpt?: string;
}

/** What the accepting side knows about a message: kept with it for delivery and DSNs. */
export interface Envelope {
  /** Reverse-path as `local@domain`, or '' for the null sender. */
  readonly sender: string;
  readonly recipients: readonly EnvelopeRecipient[];
  readonly body: BodyType;
  /** The message needs SMTPUTF8 downstream (MAIL FROM carried SMTPUTF8). */
  readonly smtputf8: boolean;
  readonly dsnRet?: DsnRet;
  readonly dsnEnvid?: string;
  /** Where it came from: client IP, HELO name, protocol (RFC 3848 name), for logs and `queue show`. */
  readonly client: { readonly ip: string; readonly helo: string; readonly protocol: string };
}

export interface RecipientRecord extends EnvelopeRecipient {
  readonly state: RecipientState;
}

/** A queued message as the store reports it. Timestamps are ms since the epoch. */
export interface StoredMessage {
  readonly id: QueueId;
  readonly envelope: Envelope;
  readonly recipients: readonly RecipientRecord[];
  /** Bytes of the stored body (trace header included): what the next hop will receive. */
  readonly size: number;
  readonly receivedAt: number;
}

export interface ListQuery {
  /** Only messages with at least one recipient in this state. */
  readonly state?: RecipientState;
  /** Oldest first; at most this many (default 100, cap 10,000). */
  readonly limit?: number;
  /** Resume after this id (ids sort by arrival). */
  readonly after?: QueueId;
}

/**
 * One message being written. Created by QueueStore.createMessage(); exactly one of commit() or
 * abort() ends it. Not safe for concurrent writes: one producer awaits each write() in turn.
 */
export interface MessageWriter {
  /** The id the message will have once committed (it is in the `Received:` header already). */
  readonly id: QueueId;
  /** Bytes written so far. */
  readonly size: number;
  /**
   * Append body bytes. Backpressure: await it before the next write. Cost: small messages are
   * buffered in memory up to the backend's stated bound; beyond that, a page-cache write.
   * The chunk may be reused by the caller after the promise resolves.
   */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Make body + envelope durable, then resolve. Concurrent commits share one flush (group
   * commit), so latency is one flush interval, and throughput is flushes/s × batch size.
   * Rejects (and leaves nothing behind) if the store cannot make it durable.
   */
  commit(envelope: Envelope): Promise<StoredMessage>;
  /** Drop everything written; idempotent; never rejects. */
  abort(): Promise<void>;
}

export interface QueueStore {
  /** Human-readable backend name for logs (`sqlite:/path/to/spool`). */
  readonly description: string;
  /** Start a new message. Cheap: no I/O until the first write beyond the in-memory bound. */
  createMessage(): MessageWriter;
  /** One message with its envelope and recipient states, or undefined. One indexed read. */
  getMessage(id: QueueId): Promise<StoredMessage | undefined>;
  /** Messages in arrival order. One indexed range read. */
  listMessages(query?: ListQuery): Promise<StoredMessage[]>;
  /** Count of recipients per state, over the whole queue. One aggregate read. */
  countByState(): Promise<Partial<Record<RecipientState, number>>>;
  /**
   * The stored body, exactly as the next hop will receive it (before dot-stuffing), streamed in
   * chunks so a large message is never held whole in memory. Rejects with QueueError
   * `QUEUE_NOT_FOUND` for an unknown id.
   */
  readBody(id: QueueId): AsyncIterable<Uint8Array>;
  /**
   * Remove the message, its recipients and its body storage for good; resolves true when it
   * existed. This is what operator delete and final-outcome cleanup (every recipient delivered,
   * bounced, expired or deleted, and the history kept elsewhere) use. Durable when it resolves:
   * after a crash the message does not come back. Cost: one small transaction plus freeing the
   * body (an unlink, or a reference drop on shared storage). A reader already streaming the body
   * may finish; later reads reject with `QUEUE_NOT_FOUND`.
   */
  purge(id: QueueId): Promise<boolean>;
  /**
   * Flush pending commits and release files and handles. Writers still open are aborted.
   * Idempotent.
   */
  close(): Promise<void>;
}

/** Stable error codes of the queue layer; callers branch on `code`, never on the message text. */
export type QueueErrorCode = 'QUEUE_NOT_FOUND' | 'QUEUE_CLOSED' | 'QUEUE_IO' | 'QUEUE_CORRUPT' | 'QUEUE_WRITER_DONE';

export class QueueError extends Error {
  constructor(
    readonly code: QueueErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
    this.name = 'QueueError';
  }
}
