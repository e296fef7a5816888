/**
 * @module queue/sqlite/stats-db
 * The admin aggregates of the SQLite index (QueueStore.domainStats), on the connection IndexDb
 * opened. One statement: the recipients joined to their messages, grouped by domain, for the
 * counts and the oldest pending message; the history results (json_each over attempts.results,
 * joined back to their recipient for its domain) for the last error and the recent deliveries.
 *
 * Cost: one synchronous read on the event loop over every recipient row and every history
 * result of the spool (no index helps: the domain is computed from the address); no fsync, no
 * write. Finished mail is purged after --keep-done, so the spool, and this read, stay bounded.
 * Fine for an operator's page refreshed every few seconds; never called on the delivery path.
 *
 * Failure: driver errors are QUEUE_IO with the database path (guard). Trusts the results JSON it
 * wrote itself (schedule-db.ts); a row that does not parse makes SQLite fail the read.
 */
import type Database from 'better-sqlite3';
import type { DomainStats, DomainStatsQuery, RecipientState } from '../store.js';
import { guard } from './sql-guard.js';

/** The address's domain: after the last '@' (rtrim strips every trailing non-'@'), lower-cased. */
const DOMAIN = (address: string): string =>
  `lower(substr(${address}, length(rtrim(${address}, replace(${address}, '@', ''))) + 1))`;

/** History notes of operator steps: their results are not a destination's errors (nor deliveries). */
const OPERATOR_STEPS = ['hold', 'release', 'retry', 'delete', 'bounce'] as const;

const STATES: readonly RecipientState[] = ['queued', 'deferred', 'held', 'ambiguous', 'delivered', 'bounced', 'expired', 'deleted'];

/** Exported so a test can read it; one row per domain, ordered by domain. */
export const DOMAIN_STATS_QUERY = `
  WITH rcpt AS (
    SELECT ${DOMAIN('r.address')} AS domain, r.state, m.received_at
      FROM recipients r JOIN messages m ON m.id = r.message_id
  ),
  counts AS (
    SELECT domain,
           ${STATES.map((s) => `SUM(state = '${s}') AS "${s}"`).join(',\n           ')},
           MIN(CASE WHEN state IN ('queued', 'deferred', 'held', 'ambiguous') THEN received_at END) AS oldest
      FROM rcpt GROUP BY domain
  ),
  results AS (
    SELECT ${DOMAIN('r.address')} AS domain, a.at,
           json_extract(j.value, '$.state') AS state, json_extract(j.value, '$.reply') AS reply
      FROM attempts a, json_each(a.results) j
      JOIN recipients r ON r.message_id = a.message_id AND r.idx = json_extract(j.value, '$.recipient')
     WHERE a.note IS NULL OR a.note NOT IN (${OPERATOR_STEPS.map((n) => `'${n}'`).join(', ')})
  ),
  errors AS (
    SELECT domain, at, reply, ROW_NUMBER() OVER (PARTITION BY domain ORDER BY at DESC) AS n
      FROM results WHERE state IN ('deferred', 'bounced', 'expired', 'ambiguous')
  ),
  delivered AS (
    SELECT domain, COUNT(*) AS n FROM results WHERE state = 'delivered' AND at >= @since GROUP BY domain
  )
  SELECT c.*, e.at AS error_at, e.reply AS error_reply, COALESCE(d.n, 0) AS delivered
    FROM counts c
    LEFT JOIN errors e ON e.domain = c.domain AND e.n = 1
    LEFT JOIN delivered d ON d.domain = c.domain
   ORDER BY c.domain`;

type Row = { domain: string; oldest: number | null; error_at: number | null; error_reply: string | null; delivered: number } & Record<
  RecipientState,
  number
>;

export class StatsDb {
  private readonly st;

  constructor(db: Database.Database, private readonly path: string) {
    this.st = { domainStats: db.prepare<{ since: number }, Row>(DOMAIN_STATS_QUERY) };
  }

  domainStats(query: DomainStatsQuery): DomainStats[] {
    return guard(this.path, () =>
      this.st.domainStats.all({ since: query.deliveredSince }).map((row) => {
        const states: Partial<Record<RecipientState, number>> = {};
        for (const s of STATES) if (row[s] > 0) states[s] = row[s];
        return {
          domain: row.domain,
          states,
          ...(row.oldest === null ? {} : { oldestPendingAt: row.oldest }),
          ...(row.error_at === null || row.error_reply === null ? {} : { lastError: { at: row.error_at, reply: row.error_reply } }),
          delivered: row.delivered,
        };
      }),
    );
  }
}
