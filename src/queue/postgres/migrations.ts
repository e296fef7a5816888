/**
 * @module queue/postgres/migrations
 * The shared queue's schema, as numbered forward-only migrations kept as TypeScript strings, so
 * they are compiled into dist/ with the code that relies on them: `npm start`, `postwire migrate`
 * and the tests all read the same text from a fresh clone, with no file to copy or locate.
 *
 * The table `schema_migrations` holds one row per applied migration. migrate() takes a
 * transaction-level advisory lock first (key: the schema's name), so several nodes starting at
 * once apply each migration exactly once: the others wait, then find it applied. Each migration
 * runs in its own transaction with its row, so a crash mid-upgrade leaves the previous version.
 * A database whose newest applied migration is newer than this build knows is refused
 * (QUEUE_CORRUPT "newer schema"), never downgraded. Never edit a shipped migration: append.
 *
 * What the schema trusts: a `messages` row is written only in the transaction that also writes
 * its recipients and the last of its body chunks, so a row is the proof the message was accepted.
 * Body chunks of large messages are written before that transaction (streamed while the client
 * sends) and belong to nobody until it commits; `bodies_orphaned` finds them for the sweep.
 *
 * Cost: migrate() on an up-to-date schema is one advisory lock and one read.
 */

export interface PgMigration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    name: 'messages, recipients, bodies, history, leases',
    sql: `
      -- One row per accepted message. id sorts by arrival (queue/ids). Times are ms since the
      -- epoch (bigint), as in the QueueStore interface. envelope is the Envelope as JSON text
      -- (text, not jsonb: it is read back verbatim). next_attempt_at is NULL exactly when no
      -- recipient is due; attempts counts recorded delivery attempts (0 = fresh mail).
      -- The lease: lease_token is the capability every write under it presents; lease_owner is
      -- the node name tools show; lease_until (ms) has passed when <= now. NULL: nobody holds it.
      CREATE TABLE messages (
        id              text PRIMARY KEY,
        received_at     bigint NOT NULL,
        sender          text NOT NULL,
        envelope        text NOT NULL,
        size            bigint NOT NULL CHECK (size >= 0),
        chunks          integer NOT NULL CHECK (chunks >= 0),
        next_attempt_at bigint,
        attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        lease_owner     text,
        lease_token     text,
        lease_until     bigint
      );
      -- claimDue's two scans: due fresh mail and due retries, earliest first. Partial, so the
      -- finished and held tail costs the scans nothing.
      CREATE INDEX messages_due_fresh ON messages (next_attempt_at, id) WHERE next_attempt_at IS NOT NULL AND attempts = 0;
      CREATE INDEX messages_due_retry ON messages (next_attempt_at, id) WHERE next_attempt_at IS NOT NULL AND attempts > 0;
      -- Tools: which node holds what.
      CREATE INDEX messages_leased ON messages (lease_owner) WHERE lease_token IS NOT NULL;

      -- One row per recipient (DESIGN.md section 4 states). window_at: the RFC 1047 window mark
      -- (markInWindow), NULL when not in the window.
      CREATE TABLE recipients (
        message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        idx        integer NOT NULL,
        address    text NOT NULL,
        notify     text,
        orcpt      text,
        state      text NOT NULL CHECK (state IN
                     ('queued', 'deferred', 'held', 'ambiguous', 'delivered', 'bounced', 'expired', 'deleted')),
        window_at  bigint,
        PRIMARY KEY (message_id, idx)
      );
      CREATE INDEX recipients_by_state ON recipients (state, message_id);
      CREATE INDEX recipients_in_window ON recipients (message_id) WHERE window_at IS NOT NULL;

      -- The body, in chunks (seq from 0), so neither a write nor a read ever holds a large message
      -- whole. No foreign key: a large body's chunks are written while it arrives, before its
      -- message row exists. written_at (ms) lets the orphan sweep leave young uploads alone.
      CREATE TABLE bodies (
        message_id text NOT NULL,
        seq        integer NOT NULL CHECK (seq >= 0),
        data       bytea NOT NULL,
        written_at bigint NOT NULL,
        PRIMARY KEY (message_id, seq)
      );

      -- The history: one row per attempt, hold or release, in order (seq from 1 per message).
      CREATE TABLE attempts (
        message_id      text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        seq             integer NOT NULL CHECK (seq >= 1),
        at              bigint NOT NULL,
        next_hop        text NOT NULL,
        results         text NOT NULL,
        next_attempt_at bigint,
        note            text,
        PRIMARY KEY (message_id, seq)
      );
    `,
  },
  {
    version: 2,
    name: 'destination rate buckets',
    sql: `
      -- Cluster-wide outbound rate limits (queue/postgres/rates.ts): one token bucket per
      -- destination (the route's window key). tokens as counted at time at (the database's clock);
      -- per_ms and burst are the limit the last taker applied (the prune needs them). UNLOGGED:
      -- no WAL per delivery; a database crash empties it, which lets one burst through.
      CREATE UNLOGGED TABLE destination_rates (
        destination text PRIMARY KEY,
        tokens      double precision NOT NULL,
        at          timestamptz NOT NULL,
        per_ms      double precision NOT NULL CHECK (per_ms > 0),
        burst       double precision NOT NULL CHECK (burst >= 1)
      );
    `,
  },
];

/** The newest migration this build knows. */
export const PG_SCHEMA_VERSION = PG_MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);
