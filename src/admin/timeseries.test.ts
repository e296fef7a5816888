import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecipientState } from '../queue/index.js';
import type { Clock, Timer } from '../util/index.js';
import { createTimeseries, TIMESERIES_MINUTES } from './timeseries.js';

const MINUTE = 60_000;
const T0 = Date.parse('2026-11-29T21:00:00.000Z');

/** A clock the test moves: timers fire when advance() passes their deadline. */
class ManualClock implements Clock {
  private timers: Array<{ at: number; ms: number; fire: () => void; live: boolean }> = [];
  constructor(private t: number) {}
  now(): number {
    return this.t;
  }
  setTimer(ms: number, fire: () => void): Timer {
    const timer = { at: this.t + ms, ms, fire, live: true };
    this.timers.push(timer);
    return {
      cancel: () => void (timer.live = false),
      refresh: () => {
        timer.at = this.t + timer.ms;
        timer.live = true;
      },
    };
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const next = this.timers.filter((x) => x.live && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (next === undefined) break;
      this.t = next.at;
      next.live = false;
      next.fire();
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.t = end;
  }
}

function storeWith(counts: () => Partial<Record<RecipientState, number>>) {
  return { countByState: async () => counts() };
}

describe('admin timeseries', () => {
  it('counts outcomes per minute and samples the depth once a minute', async () => {
    const clock = new ManualClock(T0 + 10_000);
    let depth: Partial<Record<RecipientState, number>> = { queued: 3, deferred: 2, delivered: 40 };
    const series = createTimeseries({ store: storeWith(() => depth), clock });
    series.start();
    series.outcome('delivered', clock.now());
    series.outcome('delivered', clock.now());
    series.outcome('deferred', clock.now());
    series.outcome('ambiguous', clock.now());
    series.outcome('held', clock.now());
    depth = { held: 1, ambiguous: 1 };
    await clock.advance(MINUTE);
    series.outcome('bounced', clock.now());
    series.outcome('expired', clock.now());
    depth = { queued: 7 };
    await clock.advance(MINUTE);
    const got = await series.timeseries();
    assert.deepEqual(got.minutes, [
      { at: new Date(T0).toISOString(), queueDepth: 5, delivered: 2, deferred: 2, bounced: 0 },
      { at: new Date(T0 + MINUTE).toISOString(), queueDepth: 2, delivered: 0, deferred: 0, bounced: 2 },
      // The read samples the depth itself, so the newest point is live.
      { at: new Date(T0 + 2 * MINUTE).toISOString(), queueDepth: 7, delivered: 0, deferred: 0, bounced: 0 },
    ]);
    series.stop();
  });

  it('keeps one hour, oldest first, and repeats the depth over minutes without a sample', async () => {
    const clock = new ManualClock(T0);
    let n = 0;
    const series = createTimeseries({ store: storeWith(() => ({ queued: n })), clock });
    series.start();
    for (let i = 0; i < 90; i++) {
      series.outcome('delivered', clock.now());
      n = i + 1;
      await clock.advance(MINUTE);
    }
    series.stop();
    n = 1000;
    await clock.advance(5 * MINUTE); // stopped: no samples; the read samples the current minute only
    const { minutes } = await series.timeseries();
    assert.equal(minutes.length, TIMESERIES_MINUTES);
    const last = minutes[minutes.length - 1];
    assert.equal(last?.at, new Date(T0 + 95 * MINUTE).toISOString());
    assert.equal(last?.queueDepth, 1000);
    // Minutes 86..89 have outcomes and their own samples; 90..94 repeat the last sample (90).
    const at = (m: number) => minutes.find((x) => x.at === new Date(T0 + m * MINUTE).toISOString());
    assert.deepEqual(at(89), { at: new Date(T0 + 89 * MINUTE).toISOString(), queueDepth: 89, delivered: 1, deferred: 0, bounced: 0 });
    assert.equal(at(92)?.queueDepth, 90);
    assert.equal(at(92)?.delivered, 0);
    assert.equal(minutes[0]?.at, new Date(T0 + 36 * MINUTE).toISOString());
    assert.ok(minutes.every((m, i) => i === 0 || Date.parse(m.at) - Date.parse(minutes[i - 1]!.at) === MINUTE));
  });

  it('starts at start(), ignores outcomes older than the hour, and survives a failed sample', async () => {
    const clock = new ManualClock(T0);
    let fail = true;
    const series = createTimeseries({ store: { countByState: async () => (fail ? Promise.reject(new Error('disk')) : { deferred: 4 }) }, clock });
    series.start();
    series.outcome('delivered', T0 - 2 * 60 * MINUTE);
    await clock.advance(30_000);
    let { minutes } = await series.timeseries();
    assert.deepEqual(minutes, [{ at: new Date(T0).toISOString(), queueDepth: 0, delivered: 0, deferred: 0, bounced: 0 }]);
    fail = false;
    ({ minutes } = await series.timeseries());
    assert.equal(minutes[0]?.queueDepth, 4);
    series.stop();
  });
});
