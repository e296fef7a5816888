/**
 * @module queue/postgres/search
 * QueueStore.searchMessages on the shared queue. The walk is in SQL (sort order, keyset cursor,
 * the state and receivedBefore filters, which the indexes can use); the text filters (domain,
 * sender, recipient, last reply) are applied here in JavaScript, with queue/transitions'
 * containsFolded/domainOf/lastReplies: SearchQuery's case-insensitivity is JavaScript's Unicode
 * folding, which PostgreSQL's lower() matches only as far as the database's ctype does.
 *
 * Cost: batches of BATCH rows in sort order (2 reads each, +1 for the history when a reply filter
 * is given) until a page is full or the queue ends: proportional to the messages skipped, as the
 * interface says. The cursor format is the embedded store's ([sort, key, id], base64url JSON).
 */
import type { AttemptRecord, SearchPage, SearchQuery, SearchSort, StoredMessage } from '../store.js';
import { decodeCursor, encodeCursor } from '../rows.js';
import { checkSearchQuery, containsFolded, domainOf, lastReplies } from '../transitions.js';
import type { Queryable } from './db.js';
import { MESSAGE_COLUMNS, toRecord, withRecipients } from './rows.js';
import type { HistoryRow, MessageRow } from './rows.js';

const BATCH = 200;
const SORT_KEY: Readonly<Record<SearchSort, string>> = {
  received: 'm.id',
  'next-attempt': 'COALESCE(m.next_attempt_at, 9007199254740991)',
  size: 'm.size',
};

export async function searchMessages(db: Queryable, query: SearchQuery): Promise<SearchPage> {
  const { sort, limit } = checkSearchQuery(query);
  const key = SORT_KEY[sort];
  let after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, sort);
  const found: Array<{ message: StoredMessage; key: number | string }> = [];
  const domain = query.domain?.toLowerCase().replace(/\.$/, '');
  for (;;) {
    const where: string[] = [];
    const values: unknown[] = [];
    const param = (v: unknown): string => {
      values.push(v);
      return `$${values.length}`;
    };
    if (query.state !== undefined) where.push(`EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.state = ${param(query.state)})`);
    if (query.receivedBefore !== undefined) where.push(`m.received_at < ${param(query.receivedBefore)}`);
    if (after !== undefined) {
      where.push(sort === 'received' ? `m.id > ${param(after.id)}` : `(${key} > ${param(after.key)} OR (${key} = $${values.length} AND m.id > ${param(after.id)}))`);
    }
    const sql = `SELECT ${MESSAGE_COLUMNS.split(', ').map((c) => `m.${c}`).join(', ')}, ${key} AS sort_key FROM messages m` +
      (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') + ` ORDER BY ${key}, m.id LIMIT ${BATCH}`;
    const rows = (await db.query<MessageRow & { sort_key: number | string }>(sql, values)).rows;
    if (rows.length === 0) break;
    const messages = await withRecipients(db, rows);
    const histories = query.reply === undefined ? undefined : await historiesOf(db, rows.map((r) => r.id));
    for (const [i, message] of messages.entries()) {
      const row = rows[i] as MessageRow & { sort_key: number | string };
      after = { key: Number(row.sort_key), id: row.id };
      if (!matches(message, query, domain, histories?.get(message.id) ?? [])) continue;
      found.push({ message, key: row.sort_key });
      if (found.length > limit) break;
    }
    if (found.length > limit || rows.length < BATCH) break;
  }
  const page = found.slice(0, limit);
  const last = page[page.length - 1];
  const messages = page.map((f) => f.message);
  return found.length > limit && last !== undefined ? { messages, next: encodeCursor(sort, last.key, last.message.id) } : { messages };
}

function matches(m: StoredMessage, q: SearchQuery, domain: string | undefined, history: readonly AttemptRecord[]): boolean {
  if (domain !== undefined && !m.recipients.some((r) => domainOf(r.address) === domain)) return false;
  if (q.sender !== undefined && !containsFolded(m.envelope.sender, q.sender)) return false;
  if (q.recipient !== undefined && !m.recipients.some((r) => containsFolded(r.address, q.recipient as string))) return false;
  if (q.reply !== undefined) {
    const replies = lastReplies(history, m.recipients.length);
    if (!replies.some((r) => r !== undefined && containsFolded(r, q.reply as string))) return false;
  }
  return true;
}

async function historiesOf(db: Queryable, ids: readonly string[]): Promise<Map<string, AttemptRecord[]>> {
  const rows = await db.query<HistoryRow & { message_id: string }>(
    'SELECT message_id, at, next_hop, results, next_attempt_at, note FROM attempts WHERE message_id = ANY($1::text[]) ORDER BY message_id, seq', [ids],
  );
  const out = new Map<string, AttemptRecord[]>();
  for (const r of rows.rows) out.set(r.message_id, [...(out.get(r.message_id) ?? []), toRecord(r.message_id, r)]);
  return out;
}

