/**
 * @module qmgr/retention
 * Finished mail leaves the spool: a message whose every recipient is final (delivered, bounced,
 * expired, deleted) is purged once it is older than `--keep-done` (default 1h), so operators
 * can still inspect recent mail and its history while the disk stays bounded. Purging frees the
 * body (a spill file, or its share of a segment: the segment file goes when its last message
 * does).
 *
 * Cost: one sweep walks the finished-state lists oldest first, a page at a time, and stops at
 * the first message younger than the retention: proportional to what it purges, plus one page.
 * A message with a final and a pending recipient is skipped until it is all final.
 */
import { isFinal } from '../queue/index.js';
import type { QueueId, QueueStore } from '../queue/index.js';

const PAGE = 500;
const FINISHED = ['delivered', 'bounced', 'expired', 'deleted'] as const;

/** Purge finished messages received before `olderThan`; returns how many were purged. */
export async function sweepFinished(store: QueueStore, olderThan: number, maxPerSweep = 5_000): Promise<number> {
  let purged = 0;
  const seen = new Set<string>();
  for (const state of FINISHED) {
    let after: QueueId | undefined;
    let young = false;
    while (!young && purged < maxPerSweep) {
      const page = await store.listMessages({ state, limit: PAGE, ...(after ? { after } : {}) });
      for (const m of page) {
        // Lists run oldest first: the first young message ends this state's walk.
        if (m.receivedAt >= olderThan) {
          young = true;
          break;
        }
        if (seen.has(m.id)) continue;
        seen.add(m.id);
        if (m.recipients.every((r) => isFinal(r.state)) && (await store.purge(m.id))) purged++;
        if (purged >= maxPerSweep) break;
      }
      if (page.length < PAGE) break;
      after = page[page.length - 1]?.id;
    }
  }
  return purged;
}
