/**
 * @module queue/postgres/stats
 * QueueStore.domainStats on the shared queue: two reads (every recipient with its message's
 * arrival time; every non-operator history entry that can matter) and the aggregation here, with
 * the interface's rules spelt out in code: the domain is after the last '@' (the whole address
 * when there is none), lower-cased in ASCII only; the oldest pending message is the earliest
 * arrival among queued/deferred/held/ambiguous recipients; the last error is the newest result
 * (by record time) in deferred/bounced/expired/ambiguous; deliveries count from `deliveredSince`.
 * Cost: O(recipients + history results) per call, as the interface states (an operator's page).
 */
import type { AttemptResult, DomainStats, DomainStatsQuery, RecipientState } from '../store.js';
import { OPERATOR_NOTES } from '../store.js';
import type { Queryable } from './db.js';

const PENDING: ReadonlySet<string> = new Set(['queued', 'deferred', 'held', 'ambiguous']);
const ERRORS: ReadonlySet<string> = new Set(['deferred', 'bounced', 'expired', 'ambiguous']);

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return (at < 0 ? address : address.slice(at + 1)).replace(/[A-Z]/g, (c) => c.toLowerCase());
}

interface Acc {
  states: Partial<Record<RecipientState, number>>;
  oldest?: number;
  error?: { at: number; reply: string };
  delivered: number;
}

export async function domainStats(db: Queryable, query: DomainStatsQuery): Promise<DomainStats[]> {
  const recipients = await db.query<{ message_id: string; idx: number; address: string; state: RecipientState; received_at: number }>(
    'SELECT r.message_id, r.idx, r.address, r.state, m.received_at FROM recipients r JOIN messages m ON m.id = r.message_id',
  );
  const byDomain = new Map<string, Acc>();
  const domainOfRecipient = new Map<string, string>();
  for (const r of recipients.rows) {
    const domain = domainOf(r.address);
    domainOfRecipient.set(`${r.message_id}/${r.idx}`, domain);
    const acc = byDomain.get(domain) ?? { states: {}, delivered: 0 };
    byDomain.set(domain, acc);
    acc.states[r.state] = (acc.states[r.state] ?? 0) + 1;
    if (PENDING.has(r.state) && (acc.oldest === undefined || r.received_at < acc.oldest)) acc.oldest = r.received_at;
  }
  const history = await db.query<{ message_id: string; at: number; results: string }>(
    'SELECT message_id, at, results FROM attempts WHERE note IS NULL OR NOT (note = ANY($1::text[])) ORDER BY at, message_id, seq',
    [[...OPERATOR_NOTES]],
  );
  for (const h of history.rows) {
    let results: AttemptResult[];
    try {
      results = JSON.parse(h.results) as AttemptResult[];
    } catch {
      continue;
    }
    for (const r of results) {
      const domain = domainOfRecipient.get(`${h.message_id}/${r.recipient}`);
      const acc = domain === undefined ? undefined : byDomain.get(domain);
      if (acc === undefined) continue;
      if (ERRORS.has(r.state) && (acc.error === undefined || h.at >= acc.error.at)) acc.error = { at: h.at, reply: r.reply };
      else if (r.state === 'delivered' && h.at >= query.deliveredSince) acc.delivered++;
    }
  }
  return [...byDomain.keys()].sort().map((domain) => {
    const acc = byDomain.get(domain) as Acc;
    return {
      domain,
      states: acc.states,
      ...(acc.oldest === undefined ? {} : { oldestPendingAt: acc.oldest }),
      ...(acc.error === undefined ? {} : { lastError: acc.error }),
      delivered: acc.delivered,
    };
  });
}
