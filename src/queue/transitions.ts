/**
 * @module queue/transitions
 * The scheduling rules every backend applies the same way, as pure functions: which recipient
 * states are due, how an attempt's result moves a recipient (final states are sticky; an operator
 * hold outlasts a run's deferral), what the next attempt time becomes, how claimDue splits its
 * slots between fresh mail and retries, and which inputs are caller bugs (QUEUE_INVALID).
 * Backends (queue/sqlite, queue/postgres) call these inside their transactions, so the contract
 * in store.ts is written once.
 *
 * Cost: each function is O(recipients) or O(1), no I/O. Trusts nothing about its inputs beyond
 * their types: validators throw QueueError QUEUE_INVALID naming the bad field.
 */
import type { AttemptRecord, AttemptState, ClaimQuery, RecipientState, SearchQuery, SearchSort } from './store.js';
import { DUE_STATES, FINAL_STATES, OPERATOR_NOTES, QueueError } from './store.js';

/** Most messages one claimDue returns, whatever `limit` says. */
export const CLAIM_CAP = 10_000;

/** What recordAttempt accepts: every AttemptState but 'deleted', which only operatorDelete writes. */
const ATTEMPT_STATES: ReadonlySet<string> = new Set<AttemptState>(['delivered', 'deferred', 'bounced', 'ambiguous', 'held', 'expired']);

export function isDue(state: RecipientState): boolean {
  return DUE_STATES.includes(state);
}

export function isFinal(state: RecipientState): boolean {
  return FINAL_STATES.includes(state);
}

/** How one result moves one recipient: (state now, result) → state after. */
export type Transition = (current: RecipientState, result: AttemptState) => RecipientState;

/** The state a recipient ends in after an attempt reported `result` for it. */
export const applyResult: Transition = (current, result) => {
  if (isFinal(current)) return current;
  if ((result === 'deferred' || result === 'ambiguous') && current === 'held') return current;
  return result;
};

/** Operator release: a held recipient takes the result (deferred) even though deferrals never lift a hold. */
export const releaseHeld: Transition = (current, result) => (current === 'held' ? result : current);

/**
 * The message's next attempt time after a write: undefined when nothing is due; otherwise the
 * time asked for, or `fallback` (due at once) when none was given.
 */
export function nextAttemptAfter(states: readonly RecipientState[], asked: number | undefined, fallback: number): number | undefined {
  if (!states.some(isDue)) return undefined;
  return asked ?? fallback;
}

/**
 * How many fresh and retry messages one claim takes, given how many of each are due (each count
 * already capped at `limit`): fresh mail gets at least ceil(limit / 2) when it has that many,
 * and either kind takes the slots the other leaves.
 */
export function splitClaim(limit: number, freshDue: number, retryDue: number): { fresh: number; retry: number } {
  const fresh = Math.min(freshDue, Math.max(Math.ceil(limit / 2), limit - retryDue));
  return { fresh, retry: Math.min(retryDue, limit - fresh) };
}

/** The claim query with `limit` made a whole number in [0, CLAIM_CAP]; throws QUEUE_INVALID. */
export function checkClaimQuery(query: ClaimQuery): ClaimQuery {
  if (!Number.isFinite(query.now)) throw invalid(`claimDue: now ${query.now} is not a finite time`);
  if (!Number.isFinite(query.limit)) throw invalid(`claimDue: limit ${query.limit} is not finite`);
  if (!(query.leaseMs >= 1) || !Number.isFinite(query.leaseMs)) throw invalid(`claimDue: leaseMs ${query.leaseMs} must be at least 1`);
  if (query.owner === '') throw invalid('claimDue: owner is empty');
  return { ...query, limit: Math.min(Math.max(0, Math.floor(query.limit)), CLAIM_CAP) };
}

const SEARCH_DEFAULT = 50;
const SEARCH_CAP = 1_000;
const SEARCH_SORTS: ReadonlySet<string> = new Set<SearchSort>(['received', 'next-attempt', 'size']);
const ALL_STATES: ReadonlySet<string> = new Set<RecipientState>(['queued', 'deferred', 'held', 'ambiguous', 'delivered', 'bounced', 'expired', 'deleted']);

/** The search's sort (default 'received') and page size (default 50, in [1, 1000]); throws QUEUE_INVALID. */
export function checkSearchQuery(query: SearchQuery): { readonly sort: SearchSort; readonly limit: number } {
  const sort: SearchSort = query.sort ?? 'received';
  if (!SEARCH_SORTS.has(sort)) throw invalid(`searchMessages: unknown sort '${String(sort)}'`);
  if (query.state !== undefined && !ALL_STATES.has(query.state)) throw invalid(`searchMessages: unknown state '${String(query.state)}'`);
  if (query.receivedBefore !== undefined && !Number.isFinite(query.receivedBefore)) {
    throw invalid(`searchMessages: receivedBefore ${query.receivedBefore} is not a finite time`);
  }
  const limit = Math.min(Math.max(1, Math.floor(Number.isFinite(query.limit) ? (query.limit as number) : SEARCH_DEFAULT)), SEARCH_CAP);
  return { sort, limit };
}

/** Throws QUEUE_INVALID unless every result names a distinct existing recipient with a known state. */
export function checkRecord(record: AttemptRecord, recipientCount: number, what: string): void {
  if (!Number.isFinite(record.at)) throw invalid(`${what}: at ${record.at} is not a finite time`);
  if (record.nextAttemptAt !== undefined && !Number.isFinite(record.nextAttemptAt)) {
    throw invalid(`${what}: nextAttemptAt ${record.nextAttemptAt} is not a finite time`);
  }
  const seen = new Set<number>();
  for (const r of record.results) {
    if (!Number.isInteger(r.recipient) || r.recipient < 0 || r.recipient >= recipientCount) {
      throw invalid(`${what}: recipient ${r.recipient} is not one of the message's ${recipientCount}`);
    }
    if (seen.has(r.recipient)) throw invalid(`${what}: recipient ${r.recipient} has two results`);
    if (!ATTEMPT_STATES.has(r.state)) throw invalid(`${what}: '${String(r.state)}' is not an attempt state`);
    seen.add(r.recipient);
  }
}

function invalid(message: string): QueueError {
  return new QueueError('QUEUE_INVALID', message);
}

/**
 * Each recipient's last reply (SearchQuery.reply's definition): the reply of the newest history
 * entry with a result for it whose note is not an operator step; undefined when it has none.
 * `history` oldest first, as QueueStore.history returns it.
 */
export function lastReplies(history: readonly AttemptRecord[], recipientCount: number): Array<string | undefined> {
  const out: Array<string | undefined> = new Array<string | undefined>(recipientCount).fill(undefined);
  for (const record of history) {
    if (record.note !== undefined && OPERATOR_NOTES.includes(record.note)) continue;
    for (const r of record.results) if (r.recipient >= 0 && r.recipient < recipientCount) out[r.recipient] = r.reply;
  }
  return out;
}

/** Case-insensitive substring test, the one SearchQuery means (Unicode toLowerCase on both sides). */
export function containsFolded(haystack: string, needle: string): boolean {
  return haystack.toLowerCase().includes(needle.toLowerCase());
}

/** The domain of `local@domain` (after the last '@'), lower-cased; '' when there is no '@'. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}
