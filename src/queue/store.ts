/**
 * @module queue/store
 * The storage seam. Every queue backend (the embedded SQLite+spool store, later PostgreSQL)
 * implements QueueStore, and every backend runs the same conformance suite (conformance.ts).
 *
 * Who calls it: cleanup/ (to enqueue accepted mail), qmgr/ (to claim and record work) and admin/
 * (to read and steer). It trusts its callers for envelope validity (smtpd parsed it) and trusts
 * nothing about process lifetime: any instant may be a crash, and open() recovers.
 *
 * The durability contract (DESIGN.md invariant 2): MessageWriter.commit() resolves only after
 * the body and the envelope are on stable storage. A crash before that leaves nothing visible
 * after recovery; a crash after it loses nothing. Backends group concurrent commits into one
 * flush so durability does not cost a disk flush per message.
 *
 * The scheduling contract (DESIGN.md §4, invariants 3 and 5): work is claimed with a Lease, one
 * message at a time, so two delivery runs never hold the same message while a lease is live. A
 * lease is a capability: every write under it presents its token, and a token that no longer
 * matches (the lease expired and someone else claimed the message, or it was purged) is refused
 * with QUEUE_LEASE_LOST, so a run that lost its lease can never overwrite the new holder's work.
 * A lease past its `until` keeps working until someone else claims the message. Recipient states
 * move only forward: delivered, bounced, expired and deleted are final and no later write undoes
 * them. Each attempt, hold and release is appended to the message's history verbatim.
 * Due: not leased (or the lease expired, `until <= now`), next attempt time `<= now`, and at least
 * one recipient in a DUE_STATES state. The store keeps the next attempt time undefined exactly
 * when no recipient is due, so a finished or fully held message is never claimed.
 * The RFC 1047 window (invariant 3): markInWindow records, before end-of-data goes out, which
 * recipients are inside it; recordAttempt clears the marks; a mark left behind by a process that
 * died is turned into an `ambiguous` recipient with a history entry when the backend next opens
 * (or, on a shared backend, when it takes the dead holder's lease over: the backend's to say).
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
  /**
   * MAIL FROM carried REQUIRETLS (RFC 8689): every hop must be TLS with a verified certificate and
   * must itself offer REQUIRETLS, or the recipient bounces (5.7.30); never delivered in plain text.
   */
  readonly requireTls?: true;
  /**
   * Header fields (whole lines, CRLF-terminated) sent before the stored bytes at every delivery,
   * e.g. the DKIM-Signature computed once at enqueue, so each retry sends the same signed bytes.
   * `size` includes them.
   */
  readonly prepend?: string;
  /** Where it came from: client IP, HELO name, protocol (RFC 3848 name), for logs and `queue show`. */
  readonly client: { readonly ip: string; readonly helo: string; readonly protocol: string; readonly user?: string };
}

/** Recipients in these states are waiting for a delivery attempt; all others never are. */
export const DUE_STATES: readonly RecipientState[] = ['queued', 'deferred', 'ambiguous'];

/** Final states: once a recipient is in one, nothing moves it again. */
export const FINAL_STATES: readonly RecipientState[] = ['delivered', 'bounced', 'expired', 'deleted'];

/**
 * The history entry a backend appends when it finds window marks (markInWindow) that no
 * recordAttempt cleared: the process died inside the RFC 1047 window. Each such recipient that
 * is still due becomes `ambiguous` with this reply, in one entry (nextHop '') with this note.
 */
export const AMBIGUOUS_AT_RESTART = {
  note: 'ambiguous-at-restart',
  reply: '451 4.4.2 ambiguous: the relay stopped after end-of-data was sent and before the reply was recorded (RFC 1047)',
} as const;

export interface RecipientRecord extends EnvelopeRecipient {
  readonly state: RecipientState;
}

/** A queued message as the store reports it. Timestamps are ms since the epoch. */
export interface StoredMessage {
  readonly id: QueueId;
  readonly envelope: Envelope;
  readonly recipients: readonly RecipientRecord[];
  /**
   * Octets the next hop will receive (before dot-stuffing): envelope.prepend plus the stored body
   * (trace header included). readBody yields the body alone; readMessage (queue/prepend) both.
   */
  readonly size: number;
  readonly receivedAt: number;
  /** When the due recipients are next due; absent when no recipient is due (all final or held). */
  readonly nextAttemptAt?: number;
  /** Delivery attempts recorded so far (recordAttempt calls; operator hold/release do not count). */
  readonly attempts: number;
  /** Who holds the message now, for tools (`queue show`, which node works on it). The token is not shown. */
  readonly lease?: { readonly owner: string; readonly until: number };
}

/** A claim on one message's due recipients for one delivery run. Every write under it presents the token. */
export interface Lease {
  readonly id: QueueId;
  /** Who claimed it: a node or process name, for tools and logs. */
  readonly owner: string;
  /** Opaque and unguessable; the capability every write under the lease presents. */
  readonly token: string;
  /** ms since the epoch; the lease has expired when `until <= now`. */
  readonly until: number;
}

export interface ClaimedMessage {
  /** The whole message: every recipient with its state. The due ones are those in DUE_STATES. */
  readonly message: StoredMessage;
  readonly lease: Lease;
  /** Attempts recorded so far (0 for fresh mail): the input of the retry schedule. */
  readonly attempts: number;
}

export interface ClaimQuery {
  /** The claimer's clock, ms since the epoch: decides what is due and which leases expired. */
  readonly now: number;
  /** At most this many messages (capped at 10,000); 0 claims nothing. */
  readonly limit: number;
  /** Each lease runs until now + leaseMs (at least 1). */
  readonly leaseMs: number;
  /** Non-empty. */
  readonly owner: string;
}

/**
 * What an attempt (or an operator step) concluded for one recipient. 'queued' is never a result;
 * 'deleted' is only ever written by operatorDelete (recordAttempt refuses it with QUEUE_INVALID).
 */
export type AttemptState = 'delivered' | 'deferred' | 'bounced' | 'ambiguous' | 'held' | 'expired' | 'deleted';

export interface AttemptResult {
  /** Index into message.recipients (and envelope.recipients: same order). */
  readonly recipient: number;
  readonly state: AttemptState;
  /** The remote reply verbatim (all lines), or a local reason. */
  readonly reply: string;
}

/** One entry of a message's history: a delivery attempt, or an operator's hold or release. */
export interface AttemptRecord {
  /** ms since the epoch. */
  readonly at: number;
  /** e.g. 'mx1.example.com[192.0.2.1]:25', or '' when no connection was made. */
  readonly nextHop: string;
  /** One entry per recipient this attempt concerned, by index into message.recipients. */
  readonly results: readonly AttemptResult[];
  /** When the message's remaining due recipients are next due; absent when none remain. */
  readonly nextAttemptAt?: number;
  /** Free text kept in the history: a framing fault's byte counts, a long-line wrap, … */
  readonly note?: string;
}

export interface ListQuery {
  /** Only messages with at least one recipient in this state. */
  readonly state?: RecipientState;
  /** Oldest first; at most this many (default 100, cap 10,000). */
  readonly limit?: number;
  /** Resume after this id (ids sort by arrival). */
  readonly after?: QueueId;
}

/** How searchMessages orders its pages; every order is ascending, ties broken by id (arrival). */
export type SearchSort = 'received' | 'next-attempt' | 'size';

/**
 * Which messages searchMessages returns: every given field narrows (AND); none given matches every
 * message. "Case-insensitive" means Unicode simple case folding (JavaScript toLowerCase), the same
 * on every backend.
 */
export interface SearchQuery {
  /** At least one recipient in this state. */
  readonly state?: RecipientState;
  /** At least one recipient whose domain (the part after the last '@') equals this, case-insensitively. */
  readonly domain?: string;
  /** The sender contains this, case-insensitively ('' for the null sender matches every sender). */
  readonly sender?: string;
  /** At least one recipient address contains this, case-insensitively. */
  readonly recipient?: string;
  /** Received strictly before this time (ms since the epoch). */
  readonly receivedBefore?: number;
  /**
   * At least one recipient's last reply contains this, case-insensitively. A recipient's last
   * reply is the reply of the newest history entry that has a result for it and whose note is not
   * an operator step (OPERATOR_NOTES): what the remote (or a local delivery failure) said last.
   */
  readonly reply?: string;
  /** Default 'received' (oldest first). 'next-attempt': soonest first, messages with none last. 'size': smallest first. */
  readonly sort?: SearchSort;
  /** Page size; default 50, at most 1,000 (larger values are capped, not refused). */
  readonly limit?: number;
  /** The `next` of the previous page, with the same filters and sort; opaque to callers. */
  readonly cursor?: string;
}

export interface SearchPage {
  readonly messages: StoredMessage[];
  /** Present when more messages may follow: pass it back as `cursor`. */
  readonly next?: string;
}

/** The history notes of operator steps (hold, release, retry, delete, bounce): never a "last reply". */
export const OPERATOR_NOTES: readonly string[] = ['hold', 'release', 'retry', 'delete', 'bounce'];

/** The reply recorded for each recipient an operator retry concerns (note 'retry'). */
export const RETRY_REPLY = 'retry requested by operator';


/** Input of QueueStore.domainStats. */
export interface DomainStatsQuery {
  /** ms since the epoch: deliveries recorded at or after this count in `delivered`. */
  readonly deliveredSince: number;
}

/** One recipient domain, as QueueStore.domainStats reports it. Times are ms since the epoch. */
export interface DomainStats {
  readonly domain: string;
  /** Recipients at the domain per state; a state with none is absent. */
  readonly states: Partial<Record<RecipientState, number>>;
  readonly oldestPendingAt?: number;
  readonly lastError?: { readonly at: number; readonly reply: string };
  readonly delivered: number;
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
   * The stored body, exactly as received (our trace header included), streamed in chunks so a
   * large message is never held whole in memory. The next hop receives envelope.prepend before
   * it: read a message whole with readMessage (queue/prepend). Rejects with QueueError
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

  // Scheduling (qmgr and admin). Every time is ms since the epoch. Every method rejects
  // QUEUE_CLOSED after close(). Concurrency: any of them may run concurrently with any other,
  // from this process or (on a shared backend) another node; claims are atomic and every write
  // under a lease checks its token in the same transaction, so races resolve to one winner.

  /**
   * Claim up to `limit` due messages for `owner`, each with a fresh lease until now + leaseMs.
   * Fair: when fresh mail (0 attempts) and retries are both due, fresh mail gets at least
   * ceil(limit / 2) of the slots and retries at least floor(limit / 2), and either kind takes
   * the slots the other leaves (so pass limit >= 2, or retries wait while fresh mail keeps
   * coming). Oldest first within each kind (earliest next attempt time, then arrival); returned
   * fresh first, then retries. Atomic: concurrent claims never return the same message while a
   * lease on it is live. Lease writes need not be durable: what a crash does to leases is the
   * backend's to say (the embedded store clears them all at open).
   * Cost: two range scans bounded by `limit` (due fresh, due retries) plus one write per claimed
   * message, in one transaction; reads each claimed message like getMessage.
   * Rejects QUEUE_INVALID for a leaseMs < 1, a non-finite now or limit, or an empty owner.
   */
  claimDue(query: ClaimQuery): Promise<ClaimedMessage[]>;
  /**
   * Extend a lease to `until` (absolute). Resolves the renewed lease (same token), or undefined
   * when the lease was lost: someone else claimed the message, the run recorded or released it,
   * or the message is gone. A lease past its `until` is still renewable until someone else
   * claims it. Rejects QUEUE_INVALID for a non-finite until. Cost: one keyed write.
   */
  renewLease(lease: Lease, until: number): Promise<Lease | undefined>;
  /**
   * Record one delivery attempt and end the lease, all in one durable transaction: appends the
   * record to the history verbatim, counts the attempt, applies each result to its recipient,
   * sets the next attempt time, clears the message's window marks (markInWindow), and releases
   * the lease. Durable when it resolves (a recipient
   * marked delivered is never offered again, even after a crash).
   * Transitions: delivered, bounced, expired and held apply to any recipient not yet final;
   * deferred and ambiguous apply to a recipient in queued, deferred or ambiguous (one an
   * operator held during the run stays held). A result for a recipient already final changes
   * nothing (the history still shows it). Recipients without a result keep their state.
   * Next attempt time: record.nextAttemptAt when any recipient is still due afterwards; if the
   * record has none while some recipient is due (say an operator released one during the run),
   * record.at, i.e. due at once; undefined when none is due (record.nextAttemptAt is then
   * ignored, but kept in the history).
   * Rejects QUEUE_LEASE_LOST (nothing written) when the token no longer matches, and
   * QUEUE_INVALID (nothing written, lease kept) for a result whose recipient index is out of
   * range or repeated, an unknown state, or a non-finite time.
   * Cost: one transaction of 2 + (recipients whose state changes) writes.
   */
  recordAttempt(lease: Lease, record: AttemptRecord): Promise<void>;
  /**
   * Mark the RFC 1047 window (DESIGN.md invariant 3): end-of-data for these recipients (indices
   * into message.recipients) is about to be sent under this lease. Called right before the final
   * '.' or BDAT LAST, so that a process that dies inside the window (after end-of-data was sent,
   * before recordAttempt) leaves a trace: the next start turns every marked recipient that is
   * still due into `ambiguous` and says so (see the backend's open()). recordAttempt clears the
   * marks of the message it records (every mark made under the lease), and purge drops them.
   * Marking the same recipient again only moves its time. Need not be durable against power loss
   * (the embedded store writes it like a claim: a SIGKILL keeps it, a power cut may not).
   * Rejects QUEUE_LEASE_LOST (nothing written) when the token no longer matches: the caller must
   * then not send end-of-data. Rejects QUEUE_INVALID for an index out of range or a non-finite
   * `at`. Cost: one transaction of one keyed write per recipient, no flush.
   */
  /**
   * The peer answered 2xx to our end-of-data for these recipients: make them `delivered` and
   * clear their window marks now, before the rest of the message's run (other destinations, DSNs)
   * is recorded, so a crash in between neither redelivers them nor calls them ambiguous. Same
   * durability class as markInWindow (survives a process kill; recordAttempt later fsyncs).
   * Rejects QUEUE_LEASE_LOST on a stale token, QUEUE_INVALID on a bad index. Cost: one unsynced
   * transaction.
   */
  settleDelivered(lease: Lease, recipients: readonly number[]): Promise<void>;
  markInWindow(lease: Lease, recipients: readonly number[], at: number): Promise<void>;
  /**
   * Give the claim back unused (shutdown, or a run that never started): the message is due again
   * at once, or not before `notBefore` when given (qmgr backing off a destination whose queue is
   * full); no attempt is counted. A lease already lost is a no-op. Cost: one keyed write.
   */
  releaseLease(lease: Lease, notBefore?: number): Promise<void>;
  /** The message's history, oldest first, each record as it was written; [] for an unknown id. One indexed read. */
  history(id: QueueId): Promise<AttemptRecord[]>;
  /**
   * Operator hold: every recipient in queued, deferred or ambiguous becomes held and the message
   * is no longer due. Recorded in the history (at: the store's clock, nextHop '', each held
   * recipient with the reason as its reply, note 'hold'); not counted as an attempt. Does not
   * touch a live lease: the run's results still apply, except that its deferrals leave held
   * recipients held. Resolves false (nothing recorded) when no recipient could be held or the
   * id is unknown. Durable when it resolves; one transaction.
   */
  hold(id: QueueId, reason: string): Promise<boolean>;
  /**
   * Operator release: every held recipient becomes deferred and the message is due at once (the
   * store's clock). Recorded in the history (reply 'released by operator', note 'release',
   * nextAttemptAt the release time); not counted as an attempt. Under a live lease the message
   * stays with its holder, and the run's record sets the next time (due at once if it sets none).
   * Resolves false (nothing recorded) when no recipient was held or the id is unknown. Durable
   * when it resolves; one transaction.
   */
  release(id: QueueId): Promise<boolean>;

  // Operator tools (admin/ and the CLI through qmgr/control). Each is one durable transaction on
  // one message; none counts as an attempt; each appends one history entry (at: the store's
  // clock, nextHop '', note from OPERATOR_NOTES) unless it changed nothing.

  /**
   * Find messages by filters, in a stable order, one page at a time (see SearchQuery). Pages
   * follow a keyset cursor (the sort key and the id of the last message), so a message that
   * arrives or changes meanwhile can appear on a later page or not at all, but paging never
   * repeats or skips a message whose sort key did not change. Rejects QUEUE_INVALID for a cursor
   * this backend did not make (or made for another sort), a non-finite receivedBefore, or an
   * unknown state or sort. Cost: an index walk in sort order that evaluates the filters per
   * message until a page is full: proportional to the messages skipped, so a rare filter over a
   * deep queue scans all of it.
   */
  searchMessages(query: SearchQuery): Promise<SearchPage>;
  /**
   * Operator retry: the message's deferred and ambiguous recipients are due at once (the store's
   * clock); their states stay as they are, and the history gets one entry (each of them with its
   * state and reply RETRY_REPLY, note 'retry', nextAttemptAt now). Queued, held and final
   * recipients are not concerned (release is for held ones). Resolves false, recording nothing,
   * when no recipient is deferred or ambiguous, the id is unknown, or the message is under a live
   * lease (a delivery is in flight: its record sets the next time; try again after it).
   * Durable when it resolves.
   */
  retryNow(id: QueueId): Promise<boolean>;
  /**
   * Operator delete: every recipient not yet final (queued, deferred, held, ambiguous) becomes
   * `deleted`, final; no DSN is owed (DESIGN invariant 5). The history gets one entry (each such
   * recipient with state 'deleted' and `reason` as its reply, note 'delete'); the message is no
   * longer due, and retention purges it like any finished message. Resolves the indices that
   * became deleted, ascending; [] (nothing recorded) when none could be or the id is unknown.
   * Under a live lease it applies all the same: states only move forward, so the run's later
   * record or settleDelivered leaves `deleted` alone, but a transaction already past end-of-data
   * may still reach the recipient (hold first, and delete once the run has ended, to be sure).
   * Durable when it resolves.
   */
  operatorDelete(id: QueueId, reason: string): Promise<number[]>;
  /**
   * Operator bounce: each of `recipients` (indices into message.recipients) that is not yet final
   * becomes `bounced`; the history gets one entry (state 'bounced', `reason` as the reply, note
   * 'bounce'); the message's next attempt time is cleared when nothing is due any more. The caller
   * (qmgr/control) queues the DSN with the reason BEFORE calling this, as qmgr does for a failed
   * attempt, so a crash in between can repeat the DSN but never lose it; pass exactly the
   * recipients the DSN reported (read with getMessage just before). Resolves the indices that
   * became bounced, ascending: a recipient that turned final in between (a delivery settled it)
   * is left as it is and not returned. Under a live lease: as operatorDelete. Rejects
   * QUEUE_INVALID (nothing written) for an index out of range or repeated. Durable when it
   * resolves.
   */
  operatorBounce(id: QueueId, reason: string, recipients: readonly number[]): Promise<number[]>;

  // Admin aggregates (the web page's queue by destination). Read-only; QUEUE_CLOSED after close().

  /**
   * One row per recipient domain in the queue, ordered by domain: its recipients per state, the
   * oldest message still pending there, its last error and its recent deliveries, the input of
   * the admin overview. The domain is the part of the address after its last '@' (the whole
   * address when it has none), lower-cased (ASCII only; IDNA as stored).
   * `oldestPendingAt`: the earliest receivedAt of a message with a recipient at the domain in
   * queued, deferred, held or ambiguous; absent when none is. `lastError`: the newest history
   * result (by record time) for a recipient at the domain with state deferred, bounced, expired
   * or ambiguous, from an attempt (entries noted with one of OPERATOR_NOTES are operator steps,
   * not errors), its reply verbatim; absent when none. `delivered`: history results 'delivered'
   * for recipients at the domain in attempts at or after `deliveredSince` (so a message purged
   * since is not counted).
   * Cost: one aggregate read over every recipient and every history entry in the queue
   * (O(recipients + history results)); meant for an operator's page, not the delivery path.
   */
  domainStats(query: DomainStatsQuery): Promise<DomainStats[]>;

  /**
   * Flush pending commits and release files and handles. Writers still open are aborted.
   * Leases are left as they are (a backend may clear them at its next open; see its docs).
   * Idempotent.
   */
  close(): Promise<void>;
}

/** Stable error codes of the queue layer; callers branch on `code`, never on the message text. */
export type QueueErrorCode =
  | 'QUEUE_NOT_FOUND'
  | 'QUEUE_CLOSED'
  | 'QUEUE_IO'
  | 'QUEUE_CORRUPT'
  | 'QUEUE_WRITER_DONE'
  /** A write under a lease whose token no longer matches: someone else owns the message now, or it is gone. */
  | 'QUEUE_LEASE_LOST'
  /** The caller passed something the contract rules out (a caller bug); nothing was written. */
  | 'QUEUE_INVALID';

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
