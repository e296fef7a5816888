/**
 * @module queue/postgres/schedule
 * Claims, leases, attempts, history, hold and release on the shared queue. The rules (which
 * states are due, how results move recipients, the fresh/retry split, what is invalid) are
 * queue/transitions, the same as every backend; this file is the SQL around them.
 *
 * Claims: one transaction selects up to `limit` due fresh and `limit` due retry candidates, each
 * `ORDER BY next_attempt_at, id ... FOR UPDATE SKIP LOCKED`, so concurrent claimers on any node
 * never wait for each other and never get the same row; it leases the split it takes
 * (splitClaim) and commits; the candidates it did not take are unlocked by that commit. A row a
 * concurrent claimer leased meanwhile is re-checked by PostgreSQL (READ COMMITTED re-evaluates
 * the WHERE on the new row version), so its live lease excludes it.
 *
 * Takeover of a dead holder: a message whose lease expired is due like any other. When the
 * claim finds window marks on what it takes (markInWindow, left by a holder that died after
 * end-of-data went out and before it recorded), each marked recipient still due becomes
 * `ambiguous` with one history entry (AMBIGUOUS_AT_RESTART; not an attempt), in the claim's own
 * transaction, which is then made durable; the claimer is told (onAmbiguous) so it can log them.
 *
 * Every write under a lease locks the message row (SELECT ... FOR UPDATE) and checks the token in
 * the same transaction, so a run whose lease was taken over can never write over the new holder.
 *
 * Durability: recordAttempt, hold and release are durable transactions (the WAL is flushed before
 * they resolve). Claims, renewals, releases, window marks and settleDelivered are relaxed
 * (synchronous_commit off): a PostgreSQL crash may forget the last of them, which costs a
 * repeated delivery (at-least-once), the same class as the embedded store's unsynced writes; a
 * node's crash costs nothing, since the server keeps them.
 *
 * Cost (round trips): claimDue 5 (+2 per message whose marks it resolves) for the whole claim;
 * renewLease and releaseLease 1; markInWindow 2; settleDelivered and recordAttempt 4 each
 * (BEGIN, lock + read states, one statement that writes everything, COMMIT); hold/release 7.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { AttemptRecord, AttemptResult, ClaimedMessage, ClaimQuery, Lease, RecipientState } from '../store.js';
import { AMBIGUOUS_AT_RESTART, QueueError, RETRY_REPLY } from '../store.js';
import type { QueueId } from '../ids.js';
import { applyResult, checkClaimQuery, checkRecord, isDue, isFinal, nextAttemptAfter, releaseHeld, splitClaim } from '../transitions.js';
import type { Transition } from '../transitions.js';
import { query, tx } from './db.js';
import type { Queryable } from './db.js';
import { appendHistory, readMessages, statesOf, toRecord, writeStates } from './rows.js';
import type { HistoryRow } from './rows.js';

/** Recipients a dead holder left inside the RFC 1047 window, made ambiguous by a takeover. */
export interface AmbiguousTakeover {
  readonly id: QueueId;
  /** Indices into message.recipients, ascending. */
  readonly recipients: number[];
  /** Who held the lease that expired (for the log). */
  readonly previousOwner: string | null;
}

const DUE = 'next_attempt_at IS NOT NULL AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)';
const CANDIDATES = {
  fresh: `SELECT id, lease_owner FROM messages WHERE attempts = 0 AND ${DUE} ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`,
  retry: `SELECT id, lease_owner FROM messages WHERE attempts > 0 AND ${DUE} ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`,
} as const;

export class PgSchedule {
  constructor(
    private readonly pool: pg.Pool,
    private readonly onAmbiguous: (found: AmbiguousTakeover[]) => void,
  ) {}

  async claimDue(raw: ClaimQuery): Promise<ClaimedMessage[]> {
    const q = checkClaimQuery(raw);
    if (q.limit === 0) return [];
    const { claimed, ambiguous } = await tx(this.pool, 'claim due messages', false, async (db) => {
      const fresh = (await db.query<{ id: string; lease_owner: string | null }>(CANDIDATES.fresh, [q.now, q.limit])).rows;
      const retry = (await db.query<{ id: string; lease_owner: string | null }>(CANDIDATES.retry, [q.now, q.limit])).rows;
      const split = splitClaim(q.limit, fresh.length, retry.length);
      const taken = [...fresh.slice(0, split.fresh), ...retry.slice(0, split.retry)];
      if (taken.length === 0) return { claimed: [], ambiguous: [] };
      const ids = taken.map((t) => t.id);
      const tokens = ids.map(() => randomUUID());
      const until = q.now + q.leaseMs;
      await db.query(
        `UPDATE messages m SET lease_owner = $1, lease_token = t.token, lease_until = $2
         FROM unnest($3::text[], $4::text[]) AS t(id, token) WHERE m.id = t.id`,
        [q.owner, until, ids, tokens],
      );
      const ambiguous = await resolveMarks(db, taken, q.now);
      const messages = await readMessages(db, ids);
      const claimed = messages.map((message, i): ClaimedMessage => ({
        message,
        lease: { id: message.id, owner: q.owner, token: tokens[i] ?? '', until },
        attempts: message.attempts,
      }));
      return { claimed, ambiguous };
    });
    if (ambiguous.length > 0) this.onAmbiguous(ambiguous);
    return claimed;
  }

  async renewLease(lease: Lease, until: number): Promise<Lease | undefined> {
    if (!Number.isFinite(until)) throw new QueueError('QUEUE_INVALID', `renewLease: until ${until} is not a finite time`);
    const r = await query(this.pool, `renew lease of ${lease.id}`, 'UPDATE messages SET lease_until = $1 WHERE id = $2 AND lease_token = $3', [until, lease.id, lease.token]);
    return r.rowCount === 1 ? { ...lease, until } : undefined;
  }

  async releaseLease(lease: Lease, notBefore?: number): Promise<void> {
    if (notBefore !== undefined && !Number.isFinite(notBefore)) {
      throw new QueueError('QUEUE_INVALID', `releaseLease ${lease.id}: notBefore ${notBefore} is not a finite time`);
    }
    await query(
      this.pool,
      `release lease of ${lease.id}`,
      `UPDATE messages SET lease_owner = NULL, lease_token = NULL, lease_until = NULL,
         next_attempt_at = CASE WHEN $3::bigint IS NULL OR next_attempt_at IS NULL OR next_attempt_at >= $3::bigint
                                THEN next_attempt_at ELSE $3::bigint END
       WHERE id = $1 AND lease_token = $2`,
      [lease.id, lease.token, notBefore ?? null],
    );
  }

  async markInWindow(lease: Lease, recipients: readonly number[], at: number): Promise<void> {
    if (!Number.isFinite(at)) throw new QueueError('QUEUE_INVALID', `markInWindow ${lease.id}: at ${at} is not a finite time`);
    const what = `mark the window of ${lease.id}`;
    const head = await query<{ lease_token: string | null; n: number }>(
      this.pool, what,
      'SELECT lease_token, (SELECT count(*) FROM recipients WHERE message_id = $1) AS n FROM messages WHERE id = $1', [lease.id],
    );
    const row = head.rows[0];
    checkToken(lease, row?.lease_token);
    const count = row?.n ?? 0;
    checkIndices('markInWindow', lease.id, recipients, count);
    if (recipients.length === 0) return;
    const r = await query(
      this.pool, what,
      `UPDATE recipients r SET window_at = $3 FROM messages m
       WHERE m.id = $1 AND m.lease_token = $2 AND r.message_id = m.id AND r.idx = ANY($4::int[])`,
      [lease.id, lease.token, at, [...recipients]],
    );
    // The lease went between the check and the write: nothing was marked, and end-of-data must not go out.
    if (r.rowCount === 0) throw new QueueError('QUEUE_LEASE_LOST', `message ${lease.id}: the lease was lost`);
  }

  async settleDelivered(lease: Lease, recipients: readonly number[]): Promise<void> {
    await tx(this.pool, `settle delivered recipients of ${lease.id}`, false, async (db) => {
      const states = await lockStates(db, lease);
      checkIndices('settleDelivered', lease.id, recipients, states.length);
      const after = apply(states, recipients.map((recipient) => ({ recipient, state: 'delivered' as const, reply: '' })), applyResult);
      const changed = changes(states, after);
      // One statement: the new states, the settled recipients' marks cleared, and (nothing left to
      // try) no next attempt time, so a run that dies before recording leaves nothing due.
      await db.query(
        `WITH r AS (
           UPDATE recipients SET window_at = NULL,
             state = COALESCE((SELECT t.state FROM unnest($2::int[], $3::text[]) AS t(idx, state) WHERE t.idx = recipients.idx), state)
           WHERE message_id = $1 AND idx = ANY($4::int[]))
         UPDATE messages SET next_attempt_at = CASE WHEN $5::boolean THEN next_attempt_at END WHERE id = $1`,
        [lease.id, changed.idx, changed.states, [...recipients], after.some(isDue)],
      );
    });
  }

  async recordAttempt(lease: Lease, record: AttemptRecord): Promise<void> {
    await tx(this.pool, `record an attempt of ${lease.id}`, true, async (db) => {
      const states = await lockStates(db, lease);
      checkRecord(record, states.length, `recordAttempt ${lease.id}`);
      const after = apply(states, record.results, applyResult);
      const changed = changes(states, after);
      const results = record.results.map((r) => ({ recipient: r.recipient, state: r.state, reply: r.reply }));
      // One statement: states and marks, the message (attempt counted, next time, lease ended),
      // and the history entry.
      await db.query(
        `WITH r AS (
           UPDATE recipients SET window_at = NULL,
             state = COALESCE((SELECT t.state FROM unnest($2::int[], $3::text[]) AS t(idx, state) WHERE t.idx = recipients.idx), state)
           WHERE message_id = $1 AND (window_at IS NOT NULL OR idx = ANY($2::int[]))),
         m AS (
           UPDATE messages SET attempts = attempts + 1, next_attempt_at = $4::bigint,
             lease_owner = NULL, lease_token = NULL, lease_until = NULL WHERE id = $1)
         INSERT INTO attempts (message_id, seq, at, next_hop, results, next_attempt_at, note)
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $5::bigint, $6::text, $7::text, $8::bigint, $9::text FROM attempts WHERE message_id = $1`,
        [
          lease.id, changed.idx, changed.states, nextAttemptAfter(after, record.nextAttemptAt, record.at) ?? null,
          record.at, record.nextHop, JSON.stringify(results), record.nextAttemptAt ?? null, record.note ?? null,
        ],
      );
    });
  }

  async history(id: QueueId): Promise<AttemptRecord[]> {
    const rows = await query<HistoryRow>(
      this.pool, `read the history of ${id}`,
      'SELECT at, next_hop, results, next_attempt_at, note FROM attempts WHERE message_id = $1 ORDER BY seq', [id],
    );
    return rows.rows.map((r) => toRecord(id, r));
  }

  hold(id: QueueId, reason: string, now: number): Promise<boolean> {
    return this.operatorMove(id, now, { from: isDue, to: 'held', reply: reason, note: 'hold' }, applyResult);
  }

  release(id: QueueId, now: number): Promise<boolean> {
    const move = { from: (s: RecipientState) => s === 'held', to: 'deferred', reply: 'released by operator', note: 'release' } as const;
    return this.operatorMove(id, now, move, releaseHeld);
  }

  /** Deferred and ambiguous recipients due at `now`, in the history; false when none, or under a live lease. */
  retryNow(id: QueueId, now: number): Promise<boolean> {
    return tx(this.pool, `retry ${id}`, true, async (db) => {
      const found = await db.query<{ lease_until: number | null }>('SELECT lease_until FROM messages WHERE id = $1 FOR UPDATE', [id]);
      const row = found.rows[0];
      if (row === undefined || (row.lease_until !== null && row.lease_until > now)) return false;
      const states = await statesOf(db, id);
      const results: AttemptResult[] = states.flatMap((state, recipient) =>
        state === 'deferred' || state === 'ambiguous' ? [{ recipient, state, reply: RETRY_REPLY }] : [],
      );
      if (results.length === 0) return false;
      await db.query('UPDATE messages SET next_attempt_at = $2 WHERE id = $1', [id, now]);
      await appendHistory(db, id, { at: now, nextHop: '', results, nextAttemptAt: now, note: 'retry' });
      return true;
    });
  }

  /** Operator delete or bounce: recipients (all when `only` is undefined) not yet final take `state`; returns those that moved. */
  operatorFinal(id: QueueId, state: 'deleted' | 'bounced', reason: string, now: number, only?: readonly number[]): Promise<number[]> {
    return tx(this.pool, `operator ${state} ${id}`, true, async (db) => {
      const found = await db.query<{ next_attempt_at: number | null }>('SELECT next_attempt_at FROM messages WHERE id = $1 FOR UPDATE', [id]);
      const states = await statesOf(db, id);
      if (only !== undefined) {
        const seen = new Set<number>();
        for (const idx of only) {
          if (!Number.isInteger(idx) || idx < 0 || idx >= states.length || seen.has(idx)) {
            throw new QueueError('QUEUE_INVALID', `operator ${state} ${id}: recipient ${idx} is out of range (0..${states.length - 1}) or repeated`);
          }
          seen.add(idx);
        }
      }
      if (found.rowCount === 0) return [];
      const chosen = only === undefined ? states.map((_, i) => i) : [...only].sort((a, b) => a - b);
      const results: AttemptResult[] = chosen.flatMap((recipient) => (isFinal(states[recipient] ?? 'deleted') ? [] : [{ recipient, state, reply: reason }]));
      if (results.length === 0) return [];
      const after = apply(states, results, applyResult);
      await writeStates(db, id, states, after);
      const next = nextAttemptAfter(after, found.rows[0]?.next_attempt_at ?? undefined, now);
      await db.query('UPDATE messages SET next_attempt_at = $2 WHERE id = $1', [id, next ?? null]);
      await appendHistory(db, id, { at: now, nextHop: '', results, ...(next === undefined ? {} : { nextAttemptAt: next }), note: state === 'deleted' ? 'delete' : 'bounce' });
      return results.map((r) => r.recipient);
    });
  }

  private operatorMove(
    id: QueueId,
    now: number,
    move: { from: (s: RecipientState) => boolean; to: 'held' | 'deferred'; reply: string; note: string },
    rule: Transition,
  ): Promise<boolean> {
    return tx(this.pool, `${move.note} ${id}`, true, async (db) => {
      const found = await db.query('SELECT 1 FROM messages WHERE id = $1 FOR UPDATE', [id]);
      if (found.rowCount === 0) return false;
      const states = await statesOf(db, id);
      const results: AttemptResult[] = states.flatMap((s, recipient) => (move.from(s) ? [{ recipient, state: move.to, reply: move.reply }] : []));
      if (results.length === 0) return false;
      const after = apply(states, results, rule);
      await writeStates(db, id, states, after);
      const next = nextAttemptAfter(after, now, now);
      await db.query('UPDATE messages SET next_attempt_at = $2 WHERE id = $1', [id, next ?? null]);
      await appendHistory(db, id, { at: now, nextHop: '', results, ...(next === undefined ? {} : { nextAttemptAt: next }), note: move.note });
      return true;
    });
  }
}

/**
 * Window marks on the messages just claimed: each marked recipient still due becomes ambiguous,
 * with one history entry per message; every mark is cleared. When any is found, the claim's
 * transaction is made durable (SET LOCAL applies at its COMMIT).
 */
async function resolveMarks(db: Queryable, taken: ReadonlyArray<{ id: string; lease_owner: string | null }>, now: number): Promise<AmbiguousTakeover[]> {
  const marked = await db.query<{ message_id: string; idx: number }>(
    `UPDATE recipients SET window_at = NULL WHERE message_id = ANY($1::text[]) AND window_at IS NOT NULL
     RETURNING message_id, idx`,
    [taken.map((t) => t.id)],
  );
  if (marked.rowCount === 0) return [];
  await db.query('SET LOCAL synchronous_commit = on');
  const byMessage = new Map<string, number[]>();
  for (const r of marked.rows) byMessage.set(r.message_id, [...(byMessage.get(r.message_id) ?? []), r.idx]);
  const out: AmbiguousTakeover[] = [];
  for (const [id, indices] of byMessage) {
    const states = await statesOf(db, id);
    const results: AttemptResult[] = [...indices]
      .sort((a, b) => a - b)
      .filter((idx) => isDue(states[idx] ?? 'deleted'))
      .map((recipient) => ({ recipient, state: 'ambiguous', reply: AMBIGUOUS_AT_RESTART.reply }));
    if (results.length === 0) continue;
    const after = apply(states, results, applyResult);
    await writeStates(db, id, states, after);
    const next = await db.query<{ next_attempt_at: number | null }>('SELECT next_attempt_at FROM messages WHERE id = $1', [id]);
    const nextAt = nextAttemptAfter(after, next.rows[0]?.next_attempt_at ?? undefined, now);
    await db.query('UPDATE messages SET next_attempt_at = $2 WHERE id = $1', [id, nextAt ?? null]);
    await appendHistory(db, id, { at: now, nextHop: '', results, ...(nextAt === undefined ? {} : { nextAttemptAt: nextAt }), note: AMBIGUOUS_AT_RESTART.note });
    out.push({ id: id as QueueId, recipients: results.map((r) => r.recipient), previousOwner: taken.find((t) => t.id === id)?.lease_owner ?? null });
  }
  return out;
}

/**
 * Lock the message row, check the lease token (QUEUE_LEASE_LOST unless it is still this lease) and
 * read every recipient's state, by index: one round trip.
 */
async function lockStates(db: Queryable, lease: Lease): Promise<RecipientState[]> {
  const r = await db.query<{ lease_token: string | null; states: RecipientState[] }>(
    'SELECT lease_token, ARRAY(SELECT state FROM recipients WHERE message_id = $1 ORDER BY idx) AS states FROM messages WHERE id = $1 FOR UPDATE',
    [lease.id],
  );
  checkToken(lease, r.rows[0]?.lease_token);
  return r.rows[0]?.states ?? [];
}

/** The recipients whose state differs, as parallel arrays for unnest(). */
function changes(before: readonly RecipientState[], after: readonly RecipientState[]): { idx: number[]; states: string[] } {
  const idx: number[] = [];
  const states: string[] = [];
  after.forEach((s, i) => {
    if (s !== before[i]) {
      idx.push(i);
      states.push(s);
    }
  });
  return { idx, states };
}

function checkToken(lease: Lease, token: string | null | undefined): void {
  if (token !== lease.token) {
    throw new QueueError('QUEUE_LEASE_LOST', `message ${lease.id}: ${token === undefined ? 'no longer in the queue' : 'the lease was lost'}`);
  }
}

function checkIndices(what: string, id: string, recipients: readonly number[], count: number): void {
  for (const idx of recipients) {
    if (!Number.isInteger(idx) || idx < 0 || idx >= count) {
      throw new QueueError('QUEUE_INVALID', `${what} ${id}: recipient ${idx} is out of range (0..${count - 1})`);
    }
  }
}

function apply(states: readonly RecipientState[], results: readonly AttemptResult[], rule: Transition): RecipientState[] {
  const after = [...states];
  for (const r of results) {
    const current = after[r.recipient];
    if (current !== undefined) after[r.recipient] = rule(current, r.state);
  }
  return after;
}
