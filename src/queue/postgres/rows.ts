/**
 * @module queue/postgres/rows
 * Rows of the shared queue's tables to the QueueStore's types and back, and the reads every
 * other part shares (one message, a page of messages, the recipient states). Pure mapping plus
 * indexed SELECTs; a row whose JSON does not parse is QUEUE_CORRUPT with its id.
 */
import type { AttemptRecord, RecipientState, StoredMessage } from '../store.js';
import { recordFromColumns, storedFromColumns } from '../rows.js';
import type { Queryable } from './db.js';

export interface MessageRow {
  id: string;
  received_at: number;
  envelope: string;
  size: number;
  chunks: number;
  next_attempt_at: number | null;
  attempts: number;
  lease_owner: string | null;
  lease_until: number | null;
}

export interface RecipientRow {
  message_id: string;
  idx: number;
  address: string;
  notify: string | null;
  orcpt: string | null;
  state: RecipientState;
}

export interface HistoryRow {
  at: number;
  next_hop: string;
  results: string;
  next_attempt_at: number | null;
  note: string | null;
}

export const MESSAGE_COLUMNS = 'id, received_at, envelope, size, chunks, next_attempt_at, attempts, lease_owner, lease_until';
const RECIPIENT_COLUMNS = 'message_id, idx, address, notify, orcpt, state';


/** The messages with these ids (any order in, the order of `ids` out; missing ones dropped). */
export async function readMessages(db: Queryable, ids: readonly string[]): Promise<StoredMessage[]> {
  if (ids.length === 0) return [];
  const rows = await db.query<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ANY($1::text[])`, [ids]);
  const byId = new Map(rows.rows.map((r) => [r.id, r]));
  const recipients = await recipientsOf(db, ids);
  return ids.flatMap((id) => {
    const row = byId.get(id);
    return row === undefined ? [] : [storedFromColumns(row, recipients.get(id) ?? [])];
  });
}

/** Rows already read (a page), with their recipients in one range read. */
export async function withRecipients(db: Queryable, rows: readonly MessageRow[]): Promise<StoredMessage[]> {
  const recipients = await recipientsOf(db, rows.map((r) => r.id));
  return rows.map((r) => storedFromColumns(r, recipients.get(r.id) ?? []));
}

async function recipientsOf(db: Queryable, ids: readonly string[]): Promise<Map<string, RecipientRow[]>> {
  const out = new Map<string, RecipientRow[]>();
  if (ids.length === 0) return out;
  const rows = await db.query<RecipientRow>(
    `SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ANY($1::text[]) ORDER BY message_id, idx`, [ids],
  );
  for (const r of rows.rows) {
    const list = out.get(r.message_id);
    if (list === undefined) out.set(r.message_id, [r]);
    else list.push(r);
  }
  return out;
}

/** Every recipient's state, by index. */
export async function statesOf(db: Queryable, id: string): Promise<RecipientState[]> {
  const rows = await db.query<{ state: RecipientState }>('SELECT state FROM recipients WHERE message_id = $1 ORDER BY idx', [id]);
  return rows.rows.map((r) => r.state);
}

/** One history row as its AttemptRecord (queue/rows.ts, shared with the embedded store). */
export const toRecord = recordFromColumns;

/** Append one history entry (seq = the next one of this message), inside the caller's transaction. */
export async function appendHistory(db: Queryable, id: string, record: AttemptRecord): Promise<void> {
  const results = record.results.map((r) => ({ recipient: r.recipient, state: r.state, reply: r.reply }));
  await db.query(
    `INSERT INTO attempts (message_id, seq, at, next_hop, results, next_attempt_at, note)
     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 FROM attempts WHERE message_id = $1`,
    [id, record.at, record.nextHop, JSON.stringify(results), record.nextAttemptAt ?? null, record.note ?? null],
  );
}

/** Write the states that changed (one statement), inside the caller's transaction. */
export async function writeStates(db: Queryable, id: string, before: readonly RecipientState[], after: readonly RecipientState[]): Promise<void> {
  const idx: number[] = [];
  const states: string[] = [];
  after.forEach((s, i) => {
    if (s !== before[i]) {
      idx.push(i);
      states.push(s);
    }
  });
  if (idx.length === 0) return;
  await db.query(
    `UPDATE recipients r SET state = t.state FROM unnest($2::int[], $3::text[]) AS t(idx, state)
     WHERE r.message_id = $1 AND r.idx = t.idx`,
    [id, idx, states],
  );
}
