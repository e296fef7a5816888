/**
 * @module queue/rows
 * What both backends' rows have in common: the column shapes of a message and its recipients,
 * their mapping to StoredMessage, history rows to AttemptRecord, the NOTIFY column encoding, and the searchMessages keyset
 * cursor. Pure; the backends keep their own SQL. (The backends may not import each other.)
 *
 * Failure: an envelope column that is not JSON is QUEUE_CORRUPT with the message id; a cursor
 * that does not decode, or belongs to another sort, is QUEUE_INVALID.
 */
import type { AttemptRecord, AttemptResult, Envelope, EnvelopeRecipient, RecipientRecord, RecipientState, SearchSort, StoredMessage } from './store.js';
import { QueueError } from './store.js';
import { prependOctets } from './prepend.js';
import type { QueueId } from './ids.js';

/** The message columns both schemas share. */
export interface MessageColumns {
  readonly id: string;
  readonly received_at: number;
  readonly envelope: string;
  readonly size: number;
  readonly next_attempt_at: number | null;
  readonly attempts: number;
  readonly lease_owner: string | null;
  readonly lease_until: number | null;
}

/** The recipient columns both schemas share. */
export interface RecipientColumns {
  readonly address: string;
  readonly notify: string | null;
  readonly orcpt: string | null;
  readonly state: RecipientState;
}

/** The history columns both schemas share (results as JSON). */
export interface HistoryColumns {
  readonly at: number;
  readonly next_hop: string;
  readonly results: string;
  readonly next_attempt_at: number | null;
  readonly note: string | null;
}

type NotifyList = Extract<EnvelopeRecipient['notify'], readonly unknown[]>;

export function storedFromColumns(raw: MessageColumns, recipients: readonly RecipientColumns[]): StoredMessage {
  let envelope: Envelope;
  try {
    envelope = JSON.parse(raw.envelope) as Envelope;
  } catch (err) {
    throw new QueueError('QUEUE_CORRUPT', `message ${raw.id}: envelope JSON does not parse`, { cause: err });
  }
  return {
    id: raw.id as QueueId,
    envelope,
    recipients: recipients.map(recipientFromColumns),
    size: raw.size + prependOctets(envelope),
    receivedAt: raw.received_at,
    ...(raw.next_attempt_at === null ? {} : { nextAttemptAt: raw.next_attempt_at }),
    attempts: raw.attempts,
    ...(raw.lease_owner === null || raw.lease_until === null ? {} : { lease: { owner: raw.lease_owner, until: raw.lease_until } }),
  };
}

function recipientFromColumns(raw: RecipientColumns): RecipientRecord {
  const notify = decodeNotify(raw.notify);
  return {
    address: raw.address,
    ...(notify === undefined ? {} : { notify }),
    ...(raw.orcpt === null ? {} : { orcpt: raw.orcpt }),
    state: raw.state,
  };
}

/** One history row as the AttemptRecord it was written from. */
export function recordFromColumns(id: string, raw: HistoryColumns): AttemptRecord {
  let results: AttemptResult[];
  try {
    results = JSON.parse(raw.results) as AttemptResult[];
  } catch (err) {
    throw new QueueError('QUEUE_CORRUPT', `message ${id}: history results JSON does not parse`, { cause: err });
  }
  return {
    at: raw.at,
    nextHop: raw.next_hop,
    results,
    ...(raw.next_attempt_at === null ? {} : { nextAttemptAt: raw.next_attempt_at }),
    ...(raw.note === null ? {} : { note: raw.note }),
  };
}

/** The NOTIFY column: NULL (the default), 'NEVER', or the keywords comma-separated. */
export function encodeNotify(notify: EnvelopeRecipient['notify']): string | null {
  if (notify === undefined) return null;
  return notify === 'NEVER' ? 'NEVER' : notify.join(',');
}

export function decodeNotify(text: string | null): EnvelopeRecipient['notify'] {
  if (text === null) return undefined;
  if (text === 'NEVER') return 'NEVER';
  return text === '' ? [] : (text.split(',') as NotifyList);
}

/** A keyset cursor: the sort it belongs to, the last sort key and id, as base64url JSON. */
export function encodeCursor(sort: SearchSort, key: number | string, id: string): string {
  return Buffer.from(JSON.stringify([sort, sort === 'received' ? 0 : Number(key), id])).toString('base64url');
}

export function decodeCursor(cursor: string, sort: SearchSort): { key: number; id: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || parsed.length !== 3 || typeof parsed[1] !== 'number' || typeof parsed[2] !== 'string') {
    throw new QueueError('QUEUE_INVALID', `searchMessages: cursor ${JSON.stringify(cursor)} was not made by this store`);
  }
  if (parsed[0] !== sort) throw new QueueError('QUEUE_INVALID', `searchMessages: the cursor belongs to sort '${String(parsed[0])}', not '${sort}'`);
  return { key: parsed[1], id: parsed[2] };
}
