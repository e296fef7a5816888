import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiErrorV1 } from '../api/index.js';
import { QueueError } from '../queue/index.js';
import type { DomainStats, DomainStatsQuery, RecipientState } from '../queue/index.js';
import type { Clock } from '../util/index.js';
import { createOverview, OTHER_DESTINATIONS, RATE_WINDOW_MS } from './overview.js';

const NOW = Date.parse('2026-11-29T21:30:00.000Z');
const clock: Clock = { now: () => NOW, setTimer: () => ({ cancel() {}, refresh() {} }) };
const iso = (ms: number): string => new Date(ms).toISOString();

function fakeStore(rows: DomainStats[], states: Partial<Record<RecipientState, number>> = {}) {
  const asked: DomainStatsQuery[] = [];
  return {
    asked,
    countByState: async () => states,
    domainStats: async (q: DomainStatsQuery) => {
      asked.push(q);
      return rows;
    },
  };
}

describe('admin overview', () => {
  it('reports states, the oldest pending message and one row per domain, busiest first', async () => {
    const store = fakeStore(
      [
        { domain: 'a.test', states: { delivered: 30 }, delivered: 25 },
        { domain: 'b.test', states: { deferred: 2, queued: 1 }, oldestPendingAt: NOW - 5_000, lastError: { at: NOW - 1_000, reply: '451 4.7.1 later' }, delivered: 3 },
        { domain: 'c.test', states: { held: 1, delivered: 1 }, oldestPendingAt: NOW - 90_000, delivered: 0 },
      ],
      { delivered: 31, deferred: 2, queued: 1, held: 1 },
    );
    const overview = await createOverview({ store, clock, cacheMs: 0 })();
    assert.deepEqual(store.asked, [{ deliveredSince: NOW - RATE_WINDOW_MS }]);
    assert.deepEqual(overview, {
      states: { delivered: 31, deferred: 2, queued: 1, held: 1 },
      oldestReceivedAt: iso(NOW - 90_000),
      destinations: [
        { destination: 'b.test', states: { deferred: 2, queued: 1 }, oldestReceivedAt: iso(NOW - 5_000), lastError: { at: iso(NOW - 1_000), reply: '451 4.7.1 later' }, deliveredPerMinute: 0.3 },
        { destination: 'c.test', states: { held: 1, delivered: 1 }, oldestReceivedAt: iso(NOW - 90_000), deliveredPerMinute: 0 },
        { destination: 'a.test', states: { delivered: 30 }, deliveredPerMinute: 2.5 },
      ],
    });
  });

  it('folds the domains beyond the bound into one (other) row', async () => {
    const rows: DomainStats[] = Array.from({ length: 5 }, (_, i) => ({
      domain: `d${i}.test`,
      states: { deferred: 10 - i, delivered: 1 },
      oldestPendingAt: NOW - 1_000 * (i + 1),
      lastError: { at: NOW - 60_000 * (5 - i), reply: `451 from d${i}` },
      delivered: i,
    }));
    const overview = await createOverview({ store: fakeStore(rows), clock, maxDestinations: 2, cacheMs: 0 })();
    assert.deepEqual(overview.destinations.map((d) => d.destination), ['d0.test', 'd1.test', OTHER_DESTINATIONS]);
    assert.deepEqual(overview.destinations[2], {
      destination: OTHER_DESTINATIONS,
      states: { deferred: 8 + 7 + 6, delivered: 3 },
      oldestReceivedAt: iso(NOW - 5_000),
      lastError: { at: iso(NOW - 60_000), reply: '451 from d4' },
      deliveredPerMinute: 0.9,
    });
    assert.equal(overview.oldestReceivedAt, iso(NOW - 5_000));
  });

  it('an empty queue is an empty overview', async () => {
    assert.deepEqual(await createOverview({ store: fakeStore([]), clock })(), { states: {}, destinations: [] });
  });

  it('reuses an answer for cacheMs, shares one read between concurrent callers, and keeps no failure', async () => {
    let now = NOW;
    const moving: Clock = { now: () => now, setTimer: clock.setTimer };
    const store = fakeStore([{ domain: 'a.test', states: { queued: 1 }, delivered: 0 }]);
    const overview = createOverview({ store, clock: moving, cacheMs: 5_000 });
    const [one, two] = await Promise.all([overview(), overview()]);
    assert.equal(one, two);
    now += 4_999;
    await overview();
    assert.equal(store.asked.length, 1);
    now += 1;
    await overview();
    assert.equal(store.asked.length, 2);
    let fail = true;
    const flaky = { countByState: async () => ({}), domainStats: async () => (fail ? Promise.reject(new QueueError('QUEUE_IO', 'disk')) : []) };
    const again = createOverview({ store: flaky, clock: moving });
    await assert.rejects(again());
    fail = false;
    assert.deepEqual(await again(), { states: {}, destinations: [] });
  });

  it('a store failure is UNAVAILABLE', async () => {
    const store = { countByState: async () => ({}), domainStats: async () => Promise.reject(new QueueError('QUEUE_CLOSED', 'closed')) };
    await assert.rejects(createOverview({ store, clock })(), (err: unknown) => err instanceof ApiErrorV1 && err.code === 'UNAVAILABLE');
  });
});
