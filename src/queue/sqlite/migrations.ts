/**
 * @module queue/sqlite/migrations
 * The index schema, as numbered forward-only migrations. PRAGMA user_version holds the number of
 * the last one applied; open() applies the rest, each in its own transaction, so a crash during an
 * upgrade leaves the database at the previous version and the next open retries.
 *
 * Rules: never edit a shipped migration, only append. A database whose version is newer than this
 * build knows is refused (QUEUE_CORRUPT "newer schema"), never downgraded.
 *
 * What the schema trusts: the body bytes live outside SQLite (segments/ and bodies/), and a row
 * here is written only after its body is durable, so a row is the proof that the message was
 * accepted. Room is left for later migrations: attempts/history (a table keyed by message_id,
 * idx), next_attempt_at and lease columns on recipients, with their own partial indexes.
 *
 * Cost: user_version is one read at open; applying a migration is one transaction.
 */
import type Database from 'better-sqlite3';
import { QueueError } from '../store.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'messages and recipients',
    sql: `
      -- One row per accepted message. id sorts by arrival (queue/ids), so the primary key is the
      -- arrival-order index. body_kind says where the bytes are: a range of a shared append-only
      -- segment file, or a file of its own under bodies/ (named by id).
      CREATE TABLE messages (
        id          TEXT PRIMARY KEY NOT NULL,
        received_at INTEGER NOT NULL,
        sender      TEXT NOT NULL,
        envelope    TEXT NOT NULL,
        size        INTEGER NOT NULL CHECK (size >= 0),
        body_kind   TEXT NOT NULL CHECK (body_kind IN ('segment', 'file')),
        segment     INTEGER,
        body_offset INTEGER,
        CHECK ((body_kind = 'segment') = (segment IS NOT NULL AND body_offset IS NOT NULL))
      );
      -- Recovery and segment GC ask "who still lives in segment N, and where does it end".
      CREATE INDEX messages_by_segment ON messages (segment, body_offset) WHERE segment IS NOT NULL;

      -- One row per recipient; state is the per-recipient state machine of DESIGN.md §4.
      CREATE TABLE recipients (
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        idx        INTEGER NOT NULL,
        address    TEXT NOT NULL,
        notify     TEXT,
        orcpt      TEXT,
        state      TEXT NOT NULL CHECK (state IN
                     ('queued', 'deferred', 'held', 'ambiguous', 'delivered', 'bounced', 'expired', 'deleted')),
        PRIMARY KEY (message_id, idx)
      ) WITHOUT ROWID;
      -- list-by-state walks this in arrival order; countByState reads it without touching rows.
      CREATE INDEX recipients_by_state ON recipients (state, message_id);
    `,
  },
];

/** Bring the database up to the newest migration; returns the version it ends at. */
export function migrate(db: Database.Database, path: string, migrations: readonly Migration[] = MIGRATIONS): number {
  const current = db.pragma('user_version', { simple: true });
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  if (typeof current !== 'number') throw new QueueError('QUEUE_CORRUPT', `${path}: unreadable user_version`);
  if (current > latest) {
    throw new QueueError('QUEUE_CORRUPT', `${path}: schema version ${current} is newer than this build knows (${latest})`);
  }
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    // PRAGMA user_version is transactional in SQLite, so the bump commits with the DDL.
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return Math.max(current, latest);
}
