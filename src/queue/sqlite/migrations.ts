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
 * accepted. 002 adds scheduling: next_attempt_at, attempts and the lease (owner, token, until)
 * on messages, the attempts table (the history, keyed by message id + seq), and two partial
 * indexes that hold only due-able messages (next_attempt_at not null), one for fresh mail and one
 * for retries, so claimDue scans what it can claim and nothing else. 003 adds the RFC 1047
 * window mark (recipients.window_at, and a partial index over the marked rows for open()).
 *
 * Cost: user_version is one read at open; applying a migration is one transaction. 002 on an old
 * spool rewrites every messages row once (ADD COLUMN, then next_attempt_at = received_at for
 * messages with a due recipient): proportional to the queue, once. 003 is an ADD COLUMN with a
 * NULL default and an empty partial index: no row rewritten.
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
  {
    version: 2,
    name: 'scheduling: next attempt, leases, history',
    sql: `
      -- next_attempt_at is NULL exactly when no recipient is in queued/deferred/ambiguous (the
      -- store keeps it so), which keeps finished and fully held messages out of the due indexes.
      -- attempts counts recorded delivery attempts (0 = fresh mail, for claimDue's fairness).
      -- The lease: lease_token is the capability every write under it presents; lease_until is
      -- ms since the epoch (expired when <= now). All three are NULL when nobody holds it.
      ALTER TABLE messages ADD COLUMN next_attempt_at INTEGER;
      ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0);
      ALTER TABLE messages ADD COLUMN lease_owner TEXT;
      ALTER TABLE messages ADD COLUMN lease_token TEXT;
      ALTER TABLE messages ADD COLUMN lease_until INTEGER;

      -- A spool from 001 has no schedule yet: everything with a due recipient is due at once.
      UPDATE messages SET next_attempt_at = received_at
       WHERE EXISTS (SELECT 1 FROM recipients r
                      WHERE r.message_id = messages.id AND r.state IN ('queued', 'deferred', 'ambiguous'));

      -- claimDue: due fresh mail and due retries, each earliest-due first. Partial, so a long
      -- tail of finished or held messages costs the scans nothing. lease_until and attempts ride
      -- along so the scan skips messages under a live lease without reading their rows (SQLite
      -- re-checks 'attempts > 0' itself: a covering index needs the column).
      CREATE INDEX messages_due_fresh ON messages (next_attempt_at, id, lease_until, attempts)
       WHERE next_attempt_at IS NOT NULL AND attempts = 0;
      CREATE INDEX messages_due_retry ON messages (next_attempt_at, id, lease_until, attempts)
       WHERE next_attempt_at IS NOT NULL AND attempts > 0;
      -- open() clears every lease: this finds them without a table scan.
      CREATE INDEX messages_leased ON messages (lease_token) WHERE lease_token IS NOT NULL;

      -- The history: one row per attempt, hold or release, in order (seq from 1 per message).
      -- results is the AttemptRecord's results array as JSON, kept verbatim.
      CREATE TABLE attempts (
        message_id      TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL CHECK (seq >= 1),
        at              INTEGER NOT NULL,
        next_hop        TEXT NOT NULL,
        results         TEXT NOT NULL,
        next_attempt_at INTEGER,
        note            TEXT,
        PRIMARY KEY (message_id, seq)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    name: 'RFC 1047 window marks',
    sql: `
      -- window_at: set (ms since the epoch) by markInWindow right before end-of-data goes out for
      -- this recipient, NULL otherwise; recordAttempt clears it. A mark still set at open() means
      -- the process died inside the window: open() turns the recipient ambiguous and clears it.
      ALTER TABLE recipients ADD COLUMN window_at INTEGER;
      -- open() finds the leftover marks without a table scan.
      CREATE INDEX recipients_in_window ON recipients (message_id, idx) WHERE window_at IS NOT NULL;
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
