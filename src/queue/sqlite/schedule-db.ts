/**
 * @module queue/sqlite/schedule-db
 * The scheduling half of the SQLite index: claims, leases, attempts, history, hold and release,
 * on the connection IndexDb opened (migration 002's columns and tables). The rules themselves
 * (which states are due, how results move recipients, the fresh/retry split) are queue/transitions,
 * shared with every backend; this file is the SQL around them.
 *
 * Cost: every method is one synchronous transaction on the event loop (BEGIN IMMEDIATE; one
 * connection, so claims are atomic by construction: no other statement can run in between), and
 * none fsyncs on the event loop. recordAttempt, hold, release, retryNow and operatorFinal (delete,
 * bounce) are `durable`: the store awaits IndexDb.durable() (one WAL fdatasync on the
 * threadpool, shared by every commit of the turn) before it resolves, because a recipient marked delivered must stay delivered after a crash.
 * claimDue, renewLease and releaseLease touch only lease columns, which open() clears anyway
 * (clearLeases: this store's crash recovery for leases), so nobody waits for their flush; a power
 * loss may forget them, which is exactly what open() does on purpose (measured ≈ 50 µs per
 * claimed message in claims of 100, ≈ 60 µs per renewal).
 * claimDue scans the covering partial indexes messages_due_fresh / messages_due_retry (at most
 * `limit` rows each, plus the live-leased rows it skips without reading them: 1,000 cost ≈ 1 ms)
 * and reads each claimed message (two indexed reads).
 *
 * The RFC 1047 window (migration 003, recipients.window_at): markInWindow sets the mark under the
 * lease token like a claim: nobody waits for its fsync, so a SIGKILL (the page cache and
 * the WAL survive) keeps it, but a power loss can lose a mark; a recipient delivered in that
 * window is then delivered again after the restart, and nothing logged it as ambiguous (the one
 * case invariant 3's "logged" does not cover; making marks durable would cost an fsync per
 * transaction). recordAttempt clears the message's marks in its own (durable) transaction.
 * resolveWindows (open(), before clearLeases) turns each leftover mark of a recipient still in
 * queued/deferred/ambiguous into `ambiguous`, with one history entry per message (nextHop '',
 * note 'ambiguous-at-restart', not counted as an attempt; the next attempt time is kept, or set
 * to now when none was set), clears every mark and commits durably (one WAL fsync, only when
 * marks were found). A held or final recipient keeps its state; its mark is just cleared.
 *
 * Failure: driver errors are QUEUE_IO with the database path; a history row whose JSON does not
 * parse is QUEUE_CORRUPT. Trusts that it is the only writer (IndexDb's exclusive lock).
 */
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { AttemptRecord, AttemptResult, ClaimedMessage, ClaimQuery, Lease, RecipientState, StoredMessage } from '../store.js';
import { AMBIGUOUS_AT_RESTART, QueueError, RETRY_REPLY } from '../store.js';
import type { QueueId } from '../ids.js';
import { applyResult, checkClaimQuery, checkRecord, isDue, isFinal, nextAttemptAfter, releaseHeld, splitClaim } from '../transitions.js';
import type { Transition } from '../transitions.js';
import { guard } from './sql-guard.js';
import { recordFromColumns } from '../rows.js';

interface HistoryRowRaw {
  at: number;
  next_hop: string;
  results: string;
  next_attempt_at: number | null;
  note: string | null;
}

interface StateRowRaw {
  idx: number;
  state: RecipientState;
}

interface MarkRowRaw {
  message_id: string;
  idx: number;
}

/** Recipients a process left inside the RFC 1047 window, made ambiguous at open(). */
export interface AmbiguousAtRestart {
  readonly id: QueueId;
  /** Indices into message.recipients, ascending. */
  readonly recipients: number[];
}

/** Due: next attempt time reached and no live lease. The partial index's condition comes first. */
const DUE = `next_attempt_at IS NOT NULL AND next_attempt_at <= @now AND (lease_until IS NULL OR lease_until <= @now)`;

/** The claim scans, exported so a test can check that SQLite plans them on the partial indexes. */
export const DUE_QUERIES = {
  fresh: `SELECT id FROM messages WHERE attempts = 0 AND ${DUE} ORDER BY next_attempt_at, id LIMIT @limit`,
  retry: `SELECT id FROM messages WHERE attempts > 0 AND ${DUE} ORDER BY next_attempt_at, id LIMIT @limit`,
} as const;

export class ScheduleDb {
  private readonly st;
  private readonly inTransaction: (fn: () => unknown) => unknown;

  constructor(
    private readonly db: Database.Database,
    private readonly path: string,
    /** Reads one message as getMessage does (inside the caller's transaction). */
    private readonly read: (id: QueueId) => StoredMessage | undefined,
  ) {
    // One wrapper for every call (better-sqlite3 builds four functions per transaction() call);
    // inside the store's turn batch it runs as a savepoint (turn-batch.ts).
    this.inTransaction = db.transaction((fn: () => unknown) => fn()).immediate;
    this.st = {
      dueFresh: db.prepare<{ now: number; limit: number }, { id: string }>(DUE_QUERIES.fresh),
      dueRetry: db.prepare<{ now: number; limit: number }, { id: string }>(DUE_QUERIES.retry),
      takeLease: db.prepare<{ id: string; owner: string; token: string; until: number; now: number }>(
        `UPDATE messages SET lease_owner = @owner, lease_token = @token, lease_until = @until WHERE id = @id AND ${DUE}`,
      ),
      renew: db.prepare<[number, string, string]>('UPDATE messages SET lease_until = ? WHERE id = ? AND lease_token = ?'),
      dropLease: db.prepare<[string, string]>(
        'UPDATE messages SET lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE id = ? AND lease_token = ?',
      ),
      dropLeaseUntil: db.prepare<[number, number, string, string]>(
        'UPDATE messages SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, ' +
          'next_attempt_at = CASE WHEN next_attempt_at IS NULL OR next_attempt_at < ? THEN ? ELSE next_attempt_at END ' +
          'WHERE id = ? AND lease_token = ?',
      ),
      clearLeases: db.prepare(
        'UPDATE messages SET lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE lease_token IS NOT NULL',
      ),
      tokenOf: db.prepare<[string], { lease_token: string | null }>('SELECT lease_token FROM messages WHERE id = ?'),
      states: db.prepare<[string], StateRowRaw>('SELECT idx, state FROM recipients WHERE message_id = ? ORDER BY idx'),
      setState: db.prepare<[string, string, number]>('UPDATE recipients SET state = ? WHERE message_id = ? AND idx = ?'),
      finishAttempt: db.prepare<[number | null, string]>(
        `UPDATE messages SET attempts = attempts + 1, next_attempt_at = ?,
           lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE id = ?`,
      ),
      setNext: db.prepare<[number | null, string]>('UPDATE messages SET next_attempt_at = ? WHERE id = ?'),
      nextOf: db.prepare<[string], { next_attempt_at: number | null }>('SELECT next_attempt_at FROM messages WHERE id = ?'),
      leaseOf: db.prepare<[string], { lease_until: number | null }>('SELECT lease_until FROM messages WHERE id = ?'),
      mark: db.prepare<[number | null, string, number]>('UPDATE recipients SET window_at = ? WHERE message_id = ? AND idx = ?'),
      clearMarks: db.prepare<[string]>('UPDATE recipients SET window_at = NULL WHERE message_id = ? AND window_at IS NOT NULL'),
      marked: db.prepare<[], MarkRowRaw>(
        'SELECT message_id, idx FROM recipients WHERE window_at IS NOT NULL ORDER BY message_id, idx',
      ),
      nextSeq: db.prepare<[string], { seq: number }>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM attempts WHERE message_id = ?'),
      append: db.prepare<[string, number, number, string, string, number | null, string | null]>(
        'INSERT INTO attempts (message_id, seq, at, next_hop, results, next_attempt_at, note) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      history: db.prepare<[string], HistoryRowRaw>(
        'SELECT at, next_hop, results, next_attempt_at, note FROM attempts WHERE message_id = ? ORDER BY seq',
      ),
    };
  }

  /** Clear every lease (open(): nothing can be in flight in a process that just started). Returns how many. */
  clearLeases(): number {
    return guard(this.path, () => this.st.clearLeases.run().changes);
  }

  /**
   * open(), before clearLeases: every leftover window mark of a recipient still due becomes
   * `ambiguous` with a history entry; every mark is cleared. Returns what was made ambiguous.
   */
  resolveWindows(now: number): AmbiguousAtRestart[] {
    const rows = guard(this.path, () => this.st.marked.all());
    if (rows.length === 0) return [];
    const byMessage = new Map<QueueId, number[]>();
    for (const r of rows) {
      const list = byMessage.get(r.message_id as QueueId);
      if (list === undefined) byMessage.set(r.message_id as QueueId, [r.idx]);
      else list.push(r.idx);
    }
    return this.durable(() => {
      const out: AmbiguousAtRestart[] = [];
      for (const [id, marked] of byMessage) {
        const states = this.st.states.all(id).map((r) => r.state);
        const results: AttemptResult[] = marked
          .filter((idx) => isDue(states[idx] ?? 'deleted'))
          .map((recipient) => ({ recipient, state: 'ambiguous', reply: AMBIGUOUS_AT_RESTART.reply }));
        this.st.clearMarks.run(id);
        if (results.length === 0) continue;
        const after = this.apply(id, states, results, applyResult);
        const next = nextAttemptAfter(after, this.st.nextOf.get(id)?.next_attempt_at ?? undefined, now);
        this.st.setNext.run(next ?? null, id);
        this.append(id, { at: now, nextHop: '', results, ...(next === undefined ? {} : { nextAttemptAt: next }), note: AMBIGUOUS_AT_RESTART.note });
        out.push({ id, recipients: results.map((r) => r.recipient) });
      }
      return out;
    });
  }

  claimDue(query: ClaimQuery): ClaimedMessage[] {
    const q = checkClaimQuery(query);
    if (q.limit === 0) return [];
    return this.relaxed(() => {
      const bind = { now: q.now, limit: q.limit };
      const fresh = this.st.dueFresh.all(bind);
      const retry = this.st.dueRetry.all(bind);
      const split = splitClaim(q.limit, fresh.length, retry.length);
      const picks = [...fresh.slice(0, split.fresh), ...retry.slice(0, split.retry)];
      return picks.flatMap((row) => this.take(row.id as QueueId, q));
    });
  }

  renewLease(lease: Lease, until: number): Lease | undefined {
    if (!Number.isFinite(until)) throw new QueueError('QUEUE_INVALID', `renewLease: until ${until} is not a finite time`);
    return this.relaxed(() => (this.st.renew.run(until, lease.id, lease.token).changes === 1 ? { ...lease, until } : undefined));
  }

  /** Set the window mark of `recipients` under the lease (no fsync: see the module header). */
  markInWindow(lease: Lease, recipients: readonly number[], at: number): void {
    if (!Number.isFinite(at)) throw new QueueError('QUEUE_INVALID', `markInWindow ${lease.id}: at ${at} is not a finite time`);
    this.relaxed(() => {
      this.checkToken(lease);
      const count = this.st.states.all(lease.id).length;
      for (const idx of recipients) {
        if (!Number.isInteger(idx) || idx < 0 || idx >= count) {
          throw new QueueError('QUEUE_INVALID', `markInWindow ${lease.id}: recipient ${idx} is out of range (0..${count - 1})`);
        }
      }
      for (const idx of recipients) this.st.mark.run(at, lease.id, idx);
    });
  }

  /** Delivered recipients leave the window now, without waiting for the whole attempt's record. */
  settleDelivered(lease: Lease, recipients: readonly number[]): void {
    this.relaxed(() => {
      this.checkToken(lease);
      const states = this.st.states.all(lease.id).map((r) => r.state);
      for (const idx of recipients) {
        if (!Number.isInteger(idx) || idx < 0 || idx >= states.length) {
          throw new QueueError('QUEUE_INVALID', `settleDelivered ${lease.id}: recipient ${idx} is out of range (0..${states.length - 1})`);
        }
      }
      const after = this.apply(lease.id, states, recipients.map((recipient) => ({ recipient, state: 'delivered' as const, reply: '' })), applyResult);
      for (const idx of recipients) this.st.mark.run(null, lease.id, idx);
      // Nothing left to try: not due any more, even if the run dies before it records.
      if (!after.some(isDue)) this.st.setNext.run(null, lease.id);
    });
  }

  releaseLease(lease: Lease, notBefore?: number): void {
    if (notBefore !== undefined && !Number.isFinite(notBefore)) {
      throw new QueueError('QUEUE_INVALID', `releaseLease ${lease.id}: notBefore ${notBefore} is not a finite time`);
    }
    this.relaxed(() =>
      notBefore === undefined ? this.st.dropLease.run(lease.id, lease.token) : this.st.dropLeaseUntil.run(notBefore, notBefore, lease.id, lease.token),
    );
  }

  recordAttempt(lease: Lease, record: AttemptRecord): void {
    this.durable(() => {
      this.checkToken(lease);
      const states = this.st.states.all(lease.id).map((r) => r.state);
      checkRecord(record, states.length, `recordAttempt ${lease.id}`);
      const after = this.apply(lease.id, states, record.results, applyResult);
      this.st.finishAttempt.run(nextAttemptAfter(after, record.nextAttemptAt, record.at) ?? null, lease.id);
      this.st.clearMarks.run(lease.id);
      this.append(lease.id, record);
    });
  }

  history(id: QueueId): AttemptRecord[] {
    return guard(this.path, () => this.st.history.all(id).map((raw) => toRecord(id, raw)));
  }

  /** Every due recipient → held, in the history with `reason`; false when none was due. */
  hold(id: QueueId, reason: string, now: number): boolean {
    return this.operatorMove(id, now, { from: isDue, to: 'held', reply: reason, note: 'hold' }, applyResult);
  }

  /** Every held recipient → deferred and due at `now`, in the history; false when none was held. */
  release(id: QueueId, now: number): boolean {
    const move = { from: (s: RecipientState) => s === 'held', to: 'deferred', reply: 'released by operator', note: 'release' } as const;
    return this.operatorMove(id, now, move, releaseHeld);
  }

  /** Deferred and ambiguous recipients due at `now`, in the history; false when none, or under a live lease. */
  retryNow(id: QueueId, now: number): boolean {
    return this.durable(() => {
      const lease = this.st.leaseOf.get(id);
      if (lease === undefined || (lease.lease_until !== null && lease.lease_until > now)) return false;
      const states = this.st.states.all(id).map((r) => r.state);
      const results: AttemptResult[] = states.flatMap((state, recipient) =>
        state === 'deferred' || state === 'ambiguous' ? [{ recipient, state, reply: RETRY_REPLY }] : [],
      );
      if (results.length === 0) return false;
      this.st.setNext.run(now, id);
      this.append(id, { at: now, nextHop: '', results, nextAttemptAt: now, note: 'retry' });
      return true;
    });
  }

  /**
   * Operator delete or bounce: the recipients (all of them when `only` is undefined) not yet final
   * take `state`, in one history entry; returns the indices that moved.
   */
  operatorFinal(id: QueueId, state: 'deleted' | 'bounced', reason: string, now: number, only?: readonly number[]): number[] {
    return this.durable(() => {
      const states = this.st.states.all(id).map((r) => r.state);
      if (only !== undefined) {
        const seen = new Set<number>();
        for (const idx of only) {
          if (!Number.isInteger(idx) || idx < 0 || idx >= states.length || seen.has(idx)) {
            throw new QueueError('QUEUE_INVALID', `operator ${state} ${id}: recipient ${idx} is out of range (0..${states.length - 1}) or repeated`);
          }
          seen.add(idx);
        }
      }
      const chosen = only === undefined ? states.map((_, i) => i) : [...only].sort((a, b) => a - b);
      const results: AttemptResult[] = chosen.flatMap((recipient) =>
        isFinal(states[recipient] ?? 'deleted') ? [] : [{ recipient, state, reply: reason }],
      );
      if (results.length === 0) return [];
      const after = this.apply(id, states, results, applyResult);
      const next = nextAttemptAfter(after, this.st.nextOf.get(id)?.next_attempt_at ?? undefined, now);
      this.st.setNext.run(next ?? null, id);
      this.append(id, { at: now, nextHop: '', results, ...(next === undefined ? {} : { nextAttemptAt: next }), note: state === 'deleted' ? 'delete' : 'bounce' });
      return results.map((r) => r.recipient);
    });
  }

  private operatorMove(
    id: QueueId,
    now: number,
    move: { from: (s: RecipientState) => boolean; to: 'held' | 'deferred'; reply: string; note: string },
    rule: Transition,
  ): boolean {
    return this.durable(() => {
      const states = this.st.states.all(id).map((r) => r.state);
      const results: AttemptResult[] = states.flatMap((s, recipient) => (move.from(s) ? [{ recipient, state: move.to, reply: move.reply }] : []));
      if (results.length === 0) return false;
      const after = this.apply(id, states, results, rule);
      const next = nextAttemptAfter(after, now, now);
      this.st.setNext.run(next ?? null, id);
      this.append(id, { at: now, nextHop: '', results, ...(next === undefined ? {} : { nextAttemptAt: next }), note: move.note });
      return true;
    });
  }

  /** Throws QUEUE_LEASE_LOST unless the message exists and its lease token is this one. */
  private checkToken(lease: Lease): void {
    const token = this.st.tokenOf.get(lease.id)?.lease_token;
    if (token !== lease.token) {
      throw new QueueError('QUEUE_LEASE_LOST', `message ${lease.id}: ${token === undefined ? 'no longer in the queue' : 'the lease was lost'}`);
    }
  }

  /** Lease one message if it is still due; [] when it is not (so claimDue can flatMap). */
  private take(id: QueueId, q: ClaimQuery): ClaimedMessage[] {
    const lease: Lease = { id, owner: q.owner, token: randomUUID(), until: q.now + q.leaseMs };
    if (this.st.takeLease.run({ id, owner: lease.owner, token: lease.token, until: lease.until, now: q.now }).changes !== 1) return [];
    const message = this.read(id);
    return message === undefined ? [] : [{ message, lease, attempts: message.attempts }];
  }

  /** Write the states results lead to; returns every recipient's state afterwards. */
  private apply(id: QueueId, states: readonly RecipientState[], results: readonly AttemptResult[], rule: Transition): RecipientState[] {
    const after = [...states];
    for (const r of results) {
      const current = after[r.recipient];
      if (current === undefined) continue; // checkRecord ruled this out
      const next = rule(current, r.state);
      if (next === current) continue;
      this.st.setState.run(next, id, r.recipient);
      after[r.recipient] = next;
    }
    return after;
  }

  private append(id: QueueId, record: AttemptRecord): void {
    const seq = this.st.nextSeq.get(id)?.seq ?? 1;
    const results = record.results.map((r) => ({ recipient: r.recipient, state: r.state, reply: r.reply }));
    this.st.append.run(id, seq, record.at, record.nextHop, JSON.stringify(results), record.nextAttemptAt ?? null, record.note ?? null);
  }

  /**
   * A transaction that must be durable before its caller reports success: the store awaits
   * IndexDb.durable() after it (one shared WAL fdatasync off the event loop, wal-sync.ts).
   */
  private durable<T>(fn: () => T): T {
    return guard(this.path, () => this.inTransaction(fn) as T);
  }

  /** A transaction over lease columns or window marks only: nobody waits for its flush (see the module header). */
  private relaxed<T>(fn: () => T): T {
    return guard(this.path, () => this.inTransaction(fn) as T);
  }
}

const toRecord = recordFromColumns;
