/**
 * @module queue/sqlite/index-db
 * The SQLite index: one connection, WAL, prepared statements; synchronous=FULL while migrations
 * and recovery run, then NORMAL with durable() (wal-sync.ts) as the fsync, off the event loop. It knows rows, not
 * files: where a body lives is a BodyLocation it stores and hands back. Scheduling (claims,
 * leases, history, hold/release) is `schedule` (schedule-db.ts), on the same connection.
 *
 * Cost: every method is a synchronous call on the event loop, and none of them fsyncs once the
 * barrier is on: insertBatch() is one transaction for the whole batch; a new message is due at
 * once (next_attempt_at = received_at). deleteMessage() is one transaction (rows, recipients and
 * history go together). Callers that promise durability await durable(): one fdatasync of the
 * WAL on the threadpool, shared by every commit of the turn. Reads are indexed.
 *
 * Locking: locking_mode=EXCLUSIVE, so a second process opening the same spool waits busy_timeout
 * and then fails (QUEUE_IO "in use") instead of racing recovery, which deletes files. With WAL
 * this also means no -shm file. The lock goes when the process dies, so a crash never wedges it.
 *
 * Failure: SQLite errors surface as QueueError QUEUE_IO with the database path; a row whose JSON
 * does not parse is QUEUE_CORRUPT with its id. It trusts the envelope JSON it wrote itself.
 */
import Database from 'better-sqlite3';
import { prependOctets } from '../prepend.js';
import type { Envelope, ListQuery, RecipientState, SearchPage, SearchQuery, SearchSort, StoredMessage } from '../store.js';
import { decodeCursor, encodeCursor, encodeNotify, storedFromColumns } from '../rows.js';
import { OPERATOR_NOTES, QueueError } from '../store.js';
import { checkSearchQuery, containsFolded, domainOf } from '../transitions.js';
import type { QueueId } from '../ids.js';
import { migrate } from './migrations.js';
import { ScheduleDb } from './schedule-db.js';
import { TurnBatch } from './turn-batch.js';
import { StatsDb } from './stats-db.js';
import { guard } from './sql-guard.js';
import { WalSync } from './wal-sync.js';
import { ioError } from './fs-util.js';

export type BodyLocation =
  | { readonly kind: 'segment'; readonly segment: number; readonly offset: number }
  | { readonly kind: 'file' };

/** One message as the committer hands it over, body already durable. */
export interface NewRow {
  readonly id: QueueId;
  readonly receivedAt: number;
  readonly envelope: Envelope;
  readonly size: number;
  readonly location: BodyLocation;
}

export interface BodyRow {
  readonly id: QueueId;
  readonly size: number;
  readonly location: BodyLocation;
}

/** Per segment: how many live messages, and where the last of them ends (recovery truncates there). */
export interface SegmentUse {
  readonly segment: number;
  readonly count: number;
  readonly end: number;
}

interface MessageRowRaw {
  id: string;
  received_at: number;
  envelope: string;
  size: number;
  body_kind: string;
  segment: number | null;
  body_offset: number | null;
  next_attempt_at: number | null;
  attempts: number;
  lease_owner: string | null;
  lease_until: number | null;
}

interface RecipientRowRaw {
  message_id: string;
  idx: number;
  address: string;
  notify: string | null;
  orcpt: string | null;
  state: RecipientState;
}


/** The sort key of each order, as SQL over `m`; messages with no next attempt sort last. */
const SORT_KEY: Readonly<Record<SearchSort, string>> = {
  received: 'm.id',
  'next-attempt': 'COALESCE(m.next_attempt_at, 9007199254740991)',
  size: 'm.size',
};
const OPERATOR_NOTE_LIST = OPERATOR_NOTES.map((n) => `'${n}'`).join(', ');
/**
 * A recipient's last reply (SearchQuery.reply): the newest non-operator history entry with a
 * result for it. json_each walks the stored results arrays; the window picks the newest per recipient.
 */
const LAST_REPLY_MATCHES = `EXISTS (SELECT 1 FROM (
    SELECT json_extract(j.value, '$.reply') AS reply,
           ROW_NUMBER() OVER (PARTITION BY json_extract(j.value, '$.recipient') ORDER BY a.seq DESC) AS rn
      FROM attempts a, json_each(a.results) j
     WHERE a.message_id = m.id AND (a.note IS NULL OR a.note NOT IN (${OPERATOR_NOTE_LIST}))) x
   WHERE x.rn = 1 AND postwire_contains(x.reply, @reply))`;

const LIST_DEFAULT = 100;
const WAL_CHECKPOINT_PAGES = 10_000;
const LIST_CAP = 10_000;
const MESSAGE_COLUMNS =
  'id, received_at, envelope, size, body_kind, segment, body_offset, next_attempt_at, attempts, lease_owner, lease_until';

export class IndexDb {
  private readonly db: Database.Database;
  private readonly st;
  private wal: WalSync | undefined;
  /** Claims, leases, attempts, history, hold and release. */
  readonly schedule: ScheduleDb;
  /** The admin aggregates (domainStats). */
  readonly stats: StatsDb;
  /** The turn's scheduling writes in one transaction (turn-batch.ts). */
  readonly batch: TurnBatch;
  private readonly insertRows: (rows: readonly NewRow[]) => void;

  /** searchMessages statements by SQL text: one per filter combination actually used. */
  private readonly searches = new Map<string, Database.Statement<Record<string, unknown>, MessageRowRaw>>();

  private constructor(db: Database.Database, readonly path: string) {
    this.db = db;
    // SearchQuery's case-insensitivity is JavaScript's (Unicode), not SQLite's ASCII-only lower().
    db.function('postwire_contains', { deterministic: true }, (hay: unknown, needle: unknown) =>
      typeof hay === 'string' && typeof needle === 'string' && containsFolded(hay, needle) ? 1 : 0);
    db.function('postwire_domain', { deterministic: true }, (address: unknown) => (typeof address === 'string' ? domainOf(address) : null));
    this.schedule = new ScheduleDb(db, path, (id) => this.getMessage(id));
    this.stats = new StatsDb(db, path);
    this.batch = new TurnBatch(db, path);
    // Built once: better-sqlite3 makes four wrapper functions per transaction() call.
    this.insertRows = db.transaction((rows: readonly NewRow[]) => {
      for (const row of rows) this.insertOne(row);
    }).immediate;
    this.st = {
      insertMessage: db.prepare(
        `INSERT INTO messages (id, received_at, sender, envelope, size, body_kind, segment, body_offset, next_attempt_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertRecipient: db.prepare(
        'INSERT INTO recipients (message_id, idx, address, notify, orcpt, state) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      getMessage: db.prepare<[string], MessageRowRaw>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ?`),
      recipientsOf: db.prepare<[string], RecipientRowRaw>(
        'SELECT message_id, idx, address, notify, orcpt, state FROM recipients WHERE message_id = ? ORDER BY idx',
      ),
      recipientsIn: db.prepare<[string, string], RecipientRowRaw>(
        `SELECT message_id, idx, address, notify, orcpt, state FROM recipients
         WHERE message_id >= ? AND message_id <= ? ORDER BY message_id, idx`,
      ),
      listAll: db.prepare<[string, number], MessageRowRaw>(
        `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id > ? ORDER BY id LIMIT ?`,
      ),
      listByState: db.prepare<[string, string, number], MessageRowRaw>(
        `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id IN (
           SELECT DISTINCT message_id FROM recipients WHERE state = ? AND message_id > ?
           ORDER BY message_id LIMIT ?)
         ORDER BY id`,
      ),
      countByState: db.prepare<[], { state: RecipientState; n: number }>(
        'SELECT state, COUNT(*) AS n FROM recipients GROUP BY state',
      ),
      deleteRecipients: db.prepare('DELETE FROM recipients WHERE message_id = ?'),
      deleteHistory: db.prepare('DELETE FROM attempts WHERE message_id = ?'),
      deleteMessage: db.prepare('DELETE FROM messages WHERE id = ?'),
      segmentUse: db.prepare<[], SegmentUse>(
        `SELECT segment, COUNT(*) AS count, MAX(body_offset + size) AS "end"
         FROM messages WHERE segment IS NOT NULL GROUP BY segment`,
      ),
      segmentBodies: db.prepare<[number], { id: string; size: number; body_offset: number }>(
        'SELECT id, size, body_offset FROM messages WHERE segment = ? ORDER BY body_offset',
      ),
      fileBodies: db.prepare<[], { id: string; size: number }>(
        "SELECT id, size FROM messages WHERE body_kind = 'file'",
      ),
      countMessages: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM messages'),
    };
  }

  static open(path: string): IndexDb {
    return guard(path, () => {
      const db = new Database(path, { timeout: 2000 });
      try {
        db.pragma('locking_mode = EXCLUSIVE');
        db.pragma('journal_mode = WAL');
        // FULL while migrations and recovery run (each of their commits fsynced in place);
        // startWalBarrier() then switches to NORMAL plus an fdatasync off the event loop.
        db.pragma('synchronous = FULL');
        db.pragma('foreign_keys = ON');
        migrate(db, path);
        return new IndexDb(db, path);
      } catch (err) {
        db.close();
        throw err;
      }
    });
  }

  /** All rows of a batch in one transaction (the caller awaits durable() before acknowledging). */
  insertBatch(rows: readonly NewRow[]): void {
    guard(this.path, () => this.insertRows(rows));
  }

  getMessage(id: QueueId): StoredMessage | undefined {
    return guard(this.path, () => {
      const raw = this.st.getMessage.get(id);
      return raw === undefined ? undefined : storedFromColumns(raw, this.st.recipientsOf.all(id));
    });
  }

  getBody(id: QueueId): BodyRow | undefined {
    return guard(this.path, () => {
      const raw = this.st.getMessage.get(id);
      return raw === undefined ? undefined : { id: raw.id as QueueId, size: raw.size, location: toLocation(raw) };
    });
  }

  listMessages(query: ListQuery): StoredMessage[] {
    return guard(this.path, () => {
      const limit = Math.min(Math.max(0, Math.floor(query.limit ?? LIST_DEFAULT)), LIST_CAP);
      const after = query.after ?? '';
      const rows = query.state === undefined
        ? this.st.listAll.all(after, limit)
        : this.st.listByState.all(query.state, after, limit);
      const first = rows[0];
      const last = rows[rows.length - 1];
      if (first === undefined || last === undefined) return [];
      // One range read for every recipient of the page instead of one query per message.
      const byMessage = new Map<string, RecipientRowRaw[]>();
      for (const r of this.st.recipientsIn.all(first.id, last.id)) {
        const list = byMessage.get(r.message_id);
        if (list === undefined) byMessage.set(r.message_id, [r]);
        else list.push(r);
      }
      return rows.map((raw) => storedFromColumns(raw, byMessage.get(raw.id) ?? []));
    });
  }

  /** QueueStore.searchMessages: one statement per page, limit + 1 rows to know whether more follow. */
  search(query: SearchQuery): SearchPage {
    const { sort, limit } = checkSearchQuery(query);
    const key = SORT_KEY[sort];
    const where: string[] = [];
    const bind: Record<string, unknown> = { limit: limit + 1 };
    const rcpt = (cond: string): string => `EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND ${cond})`;
    if (query.state !== undefined) {
      where.push(rcpt('r.state = @state'));
      bind.state = query.state;
    }
    if (query.domain !== undefined) {
      where.push(rcpt('postwire_domain(r.address) = @domain'));
      bind.domain = query.domain.toLowerCase().replace(/\.$/, '');
    }
    if (query.sender !== undefined) {
      where.push('postwire_contains(m.sender, @sender)');
      bind.sender = query.sender;
    }
    if (query.recipient !== undefined) {
      where.push(rcpt('postwire_contains(r.address, @recipient)'));
      bind.recipient = query.recipient;
    }
    if (query.receivedBefore !== undefined) {
      where.push('m.received_at < @before');
      bind.before = query.receivedBefore;
    }
    if (query.reply !== undefined) {
      where.push(LAST_REPLY_MATCHES);
      bind.reply = query.reply;
    }
    if (query.cursor !== undefined) {
      const after = decodeCursor(query.cursor, sort);
      where.push(sort === 'received' ? 'm.id > @afterId' : `(${key} > @afterKey OR (${key} = @afterKey AND m.id > @afterId))`);
      bind.afterId = after.id;
      if (sort !== 'received') bind.afterKey = after.key;
    }
    const sql = `SELECT ${MESSAGE_COLUMNS.split(', ').map((c) => `m.${c}`).join(', ')}, ${key} AS sort_key FROM messages m` +
      (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') + ` ORDER BY ${key}, m.id LIMIT @limit`;
    return guard(this.path, () => {
      let statement = this.searches.get(sql);
      if (statement === undefined) {
        statement = this.db.prepare<Record<string, unknown>, MessageRowRaw>(sql);
        this.searches.set(sql, statement);
      }
      const rows = statement.all(bind) as Array<MessageRowRaw & { sort_key: number | string }>;
      const page = rows.slice(0, limit);
      const messages = page.map((raw) => storedFromColumns(raw, this.st.recipientsOf.all(raw.id)));
      const last = page[page.length - 1];
      return rows.length > limit && last !== undefined ? { messages, next: encodeCursor(sort, last.sort_key, last.id) } : { messages };
    });
  }

  countByState(): Partial<Record<RecipientState, number>> {
    return guard(this.path, () => {
      const out: Partial<Record<RecipientState, number>> = {};
      for (const { state, n } of this.st.countByState.all()) out[state] = n;
      return out;
    });
  }

  /** Delete the rows; returns where the body was, so the caller can free it after this committed. */
  deleteMessage(id: QueueId): BodyRow | undefined {
    return guard(this.path, () =>
      this.db.transaction((): BodyRow | undefined => {
        const raw = this.st.getMessage.get(id);
        if (raw === undefined) return undefined;
        this.st.deleteRecipients.run(id);
        this.st.deleteHistory.run(id);
        this.st.deleteMessage.run(id);
        return { id: raw.id as QueueId, size: raw.size, location: toLocation(raw) };
      }).immediate(),
    );
  }

  segmentUse(): SegmentUse[] {
    return guard(this.path, () => this.st.segmentUse.all());
  }

  segmentBodies(segment: number): Array<{ id: QueueId; size: number; offset: number }> {
    return guard(this.path, () =>
      this.st.segmentBodies.all(segment).map((r) => ({ id: r.id as QueueId, size: r.size, offset: r.body_offset })),
    );
  }

  fileBodies(): Array<{ id: QueueId; size: number }> {
    return guard(this.path, () => this.st.fileBodies.all().map((r) => ({ id: r.id as QueueId, size: r.size })));
  }

  countMessages(): number {
    return guard(this.path, () => this.st.countMessages.get()?.n ?? 0);
  }

  /**
   * From now on commits return without an fsync (synchronous=NORMAL) and durable() makes them
   * stable on the threadpool (wal-sync.ts). Called once recovery is done.
   */
  startWalBarrier(): void {
    guard(this.path, () => {
      this.db.pragma('synchronous = NORMAL');
      // A checkpoint runs inside the commit that crosses this many WAL pages and fsyncs the WAL
      // and the database on the event loop: the one fsync left there. 10,000 pages (40 MiB of
      // WAL) instead of SQLite's 1,000 makes it ten times rarer for about the same work each.
      this.db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
    });
    this.wal = new WalSync(`${this.path}-wal`);
  }

  /**
   * Resolves once every transaction committed before the call is on stable storage. Before
   * startWalBarrier() every commit is fsynced in place, so it resolves at once.
   */
  durable(): Promise<void> {
    return this.wal === undefined ? Promise.resolve() : this.wal.barrier().catch((err: unknown) => {
      throw ioError('fdatasync', `${this.path}-wal`, err);
    });
  }

  /** WAL fdatasyncs so far (each covering every commit before it). */
  get walFlushes(): number {
    return this.wal?.flushes ?? 0;
  }

  async close(): Promise<void> {
    this.batch.flush();
    await this.wal?.close();
    guard(this.path, () => this.db.close());
  }

  private insertOne(row: NewRow): void {
    const loc = row.location;
    this.st.insertMessage.run(
      row.id,
      row.receivedAt,
      row.envelope.sender,
      JSON.stringify(row.envelope),
      row.size,
      loc.kind,
      loc.kind === 'segment' ? loc.segment : null,
      loc.kind === 'segment' ? loc.offset : null,
      row.envelope.recipients.length > 0 ? row.receivedAt : null,
    );
    row.envelope.recipients.forEach((r, idx) => {
      this.st.insertRecipient.run(row.id, idx, r.address, encodeNotify(r.notify), r.orcpt ?? null, 'queued');
    });
  }
}

/** Build the StoredMessage a commit resolves with, without a read back. */
export function storedFromRow(row: NewRow): StoredMessage {
  return {
    id: row.id,
    envelope: row.envelope,
    recipients: row.envelope.recipients.map((r) => ({ ...r, state: 'queued' as const })),
    size: row.size + prependOctets(row.envelope),
    receivedAt: row.receivedAt,
    ...(row.envelope.recipients.length > 0 ? { nextAttemptAt: row.receivedAt } : {}),
    attempts: 0,
  };
}

function toLocation(raw: MessageRowRaw): BodyLocation {
  if (raw.body_kind === 'file') return { kind: 'file' };
  if (raw.body_kind === 'segment' && raw.segment !== null && raw.body_offset !== null) {
    return { kind: 'segment', segment: raw.segment, offset: raw.body_offset };
  }
  throw new QueueError('QUEUE_CORRUPT', `message ${raw.id}: body location '${raw.body_kind}' is not valid`);
}

