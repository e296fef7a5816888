/**
 * The DestinationRates port (qmgr/rates.ts) against one conformance suite, run on every
 * implementation: the in-process buckets (qmgr/rates.test.ts) and the shared queue's table
 * (queue/postgres/rates.test.ts). Real time, short rates: each test asserts counts, and times
 * only from below (a token is never early), so a loaded machine makes them slower, never flaky.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DestinationRates } from '../../src/qmgr/index.js';

export interface RatesHarness {
  /** `nodes` ports over the same buckets (one node for an in-process implementation). */
  readonly nodes: readonly DestinationRates[];
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function runRatesConformance(name: string, make: (nodes: number) => Promise<RatesHarness>, options: { readonly shared: boolean }): void {
  describe(`destination rates conformance: ${name}`, () => {
    it('a fresh destination gives its burst at once, then refuses with the wait until the next token', async () => {
      const h = await make(1);
      try {
        const rates = h.nodes[0] as DestinationRates;
        const limit = { perMinute: 60, burst: 3 }; // a token a second: the test ends long before a second one
        const takes = [];
        for (let i = 0; i < 5; i++) takes.push(await rates.take('mx:fresh.test', limit));
        assert.deepEqual(takes.map((t) => t.taken), [true, true, true, false, false]);
        const refused = takes[4];
        assert.ok(refused && refused.waitMs > 0 && refused.waitMs <= 1_000, `wait ${refused?.waitMs} ms, at most one interval`);
        assert.ok(refused && refused.tokens < 1);
        assert.ok((await rates.peek('mx:fresh.test', limit)) < 1, 'peek sees the empty bucket');
        assert.equal(await rates.peek('mx:other.test', limit), 3, 'an untouched destination is full');
        assert.equal((await rates.take('mx:other.test', limit)).taken, true, 'destinations do not share a bucket');
      } finally {
        await h.close();
      }
    });

    it('refills at the rate: after the wait it was told, a token is there', async () => {
      const h = await make(1);
      try {
        const rates = h.nodes[0] as DestinationRates;
        const limit = { perMinute: 1_200, burst: 1 }; // one per 50 ms
        assert.equal((await rates.take('mx:refill.test', limit)).taken, true);
        const refused = await rates.take('mx:refill.test', limit);
        assert.equal(refused.taken, false);
        await sleep(refused.waitMs + 5);
        assert.equal((await rates.take('mx:refill.test', limit)).taken, true);
      } finally {
        await h.close();
      }
    });

    it(options.shared ? 'three nodes hammering one destination get no more than burst + rate × time between them' : 'hammering one destination gets no more than burst + rate × time', async () => {
      const h = await make(options.shared ? 3 : 1);
      try {
        const limit = { perMinute: 600, burst: 5 }; // 10/s
        const started = Date.now();
        let taken = 0;
        let tries = 0;
        await Promise.all(h.nodes.map(async (rates) => {
          while (Date.now() - started < 1_000) {
            tries++;
            if ((await rates.take('mx:busy.test', limit)).taken) taken++;
          }
        }));
        const elapsed = Date.now() - started;
        const most = limit.burst + Math.ceil((elapsed / 60_000) * limit.perMinute);
        assert.ok(taken <= most, `${taken} tokens in ${elapsed} ms (at most ${most}, ${tries} tries)`);
        assert.ok(taken >= limit.burst, `at least the burst (${taken})`);
      } finally {
        await h.close();
      }
    });
  });
}
