import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../util/index.js';
import type { Clock, Timer } from '../util/index.js';
import { runRatesConformance } from '../../test/support/rates-conformance.js';
import { take } from './token-bucket.js';
import type { BucketState } from './token-bucket.js';
import { COME_BACK_MAX_MS, LocalDestinationRates, RateGate } from './rates.js';
import type { DestinationRates, RateTake } from './rates.js';

/** A clock the test moves: timers fire when advance() passes their deadline. */
class ManualClock implements Clock {
  private timers: Array<{ at: number; ms: number; fire: () => void; live: boolean }> = [];
  constructor(private t = 0) {}
  now(): number {
    return this.t;
  }
  setTimer(ms: number, fire: () => void): Timer {
    const timer = { at: this.t + ms, ms, fire, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false), refresh: () => void Object.assign(timer, { at: this.t + timer.ms, live: true }) };
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const next = this.timers.filter((x) => x.live && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (next === undefined) break;
      this.t = next.at;
      next.live = false;
      next.fire();
    }
    this.t = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

const limit = { perMinute: 600, burst: 5 }; // one token per 100 ms

describe('token bucket', () => {
  it('gives the burst at once, then one token per interval, and says how long to wait', () => {
    let state: BucketState | undefined;
    let taken = 0;
    for (let i = 0; i < 10; i++) {
      const r = take(state, limit, 0);
      state = r.state;
      if (r.taken) taken++;
      else assert.equal(r.waitMs, 100);
    }
    assert.equal(taken, 5, 'the burst, no more, at one instant');
    const r = take(state, limit, 99);
    assert.equal(r.taken, false);
    assert.equal(r.taken ? 0 : r.waitMs, 1);
    assert.equal(take(r.state, limit, 100).taken, true, 'one more after one interval');
  });

  it('never holds more than the burst, and a clock that goes back refills nothing', () => {
    const full = take(undefined, limit, 0).state;
    const later = take(full, limit, 3_600_000);
    assert.equal(later.state.tokens, limit.burst - 1);
    const back = take({ tokens: 0, at: 1_000 }, limit, 500);
    assert.equal(back.taken, false);
  });
});

describe('rate gate', () => {
  it('with a local bucket: B deliveries start at once, then exactly one per interval, in FIFO order', async () => {
    const clock = new ManualClock(1_000);
    let waits = 0;
    const gate = new RateGate(new LocalDestinationRates(clock), clock, () => waits++);
    const started: Array<{ n: number; at: number }> = [];
    for (let n = 0; n < 12; n++) void gate.acquire('mx:a.test', () => limit).then((ok) => ok && started.push({ n, at: clock.now() }));
    await clock.advance(0);
    assert.deepEqual(started.map((s) => s.n), [0, 1, 2, 3, 4], 'the burst at once');
    assert.equal(gate.waitingFor('mx:a.test'), 7);
    await clock.advance(350);
    assert.equal(started.length, 8, 'then one per 100 ms');
    await clock.advance(400);
    assert.deepEqual(started.map((s) => s.n), [...Array(12).keys()], 'FIFO');
    assert.deepEqual(started.slice(5).map((s) => s.at - 1_000), [100, 200, 300, 400, 500, 600, 700]);
    assert.equal(waits, 7, 'every delivery that waited is counted once');
  });

  it('one destination over its rate does not hold another back', async () => {
    const clock = new ManualClock();
    const gate = new RateGate(new LocalDestinationRates(clock), clock);
    const slow = { perMinute: 1, burst: 1 };
    assert.equal(await gate.acquire('mx:slow.test', () => slow), true);
    let second = false;
    void gate.acquire('mx:slow.test', () => slow).then(() => (second = true));
    const others = await Promise.all(Array.from({ length: 5 }, () => gate.acquire('mx:fast.test', () => limit)));
    assert.deepEqual(others, [true, true, true, true, true]);
    await clock.advance(59_000);
    assert.equal(second, false);
    await clock.advance(1_000);
    assert.equal(second, true);
  });

  it('estimates the wait from the bucket it saw and spaces the come-back times of given-back claims one token apart', async () => {
    const clock = new ManualClock();
    const gate = new RateGate(new LocalDestinationRates(clock), clock);
    assert.equal(gate.estimate('mx:a.test', limit), 0, 'an unknown destination: try at once');
    for (let i = 0; i < 5; i++) await gate.acquire('mx:a.test', () => limit);
    assert.equal(gate.estimate('mx:a.test', limit), 100, 'the bucket is empty: one interval');
    void gate.acquire('mx:a.test', () => limit);
    await clock.advance(0);
    assert.equal(gate.estimate('mx:a.test', limit), 200, 'one waiter ahead');
    const backs = [gate.reserve('mx:a.test', limit), gate.reserve('mx:a.test', limit), gate.reserve('mx:a.test', limit)];
    assert.deepEqual(backs, [200, 300, 400]);
    const slow = { perMinute: 1, burst: 1 };
    const far = [gate.reserve('mx:slow.test', slow), gate.reserve('mx:slow.test', slow), gate.reserve('mx:slow.test', slow), gate.reserve('mx:slow.test', slow), gate.reserve('mx:slow.test', slow), gate.reserve('mx:slow.test', slow)];
    assert.deepEqual(far, [0, 60_000, 120_000, 180_000, 240_000, 300_000], 'one a minute, up to the horizon');
    assert.equal(gate.reserve('mx:slow.test', slow), COME_BACK_MAX_MS, 'never further than COME_BACK_MAX_MS');
  });

  it('a reload applies to groups already waiting: a lifted limit lets them go at once', async () => {
    const clock = new ManualClock();
    const gate = new RateGate(new LocalDestinationRates(clock), clock);
    let current: { perMinute: number; burst: number } | undefined = { perMinute: 1, burst: 1 };
    assert.equal(await gate.acquire('mx:a.test', () => current), true);
    let second = false;
    void gate.acquire('mx:a.test', () => current).then(() => (second = true));
    await clock.advance(1_000);
    assert.equal(second, false);
    current = undefined;
    gate.nudge();
    await clock.advance(0);
    assert.equal(second, true);
  });

  it('fails closed: a port that throws starts nothing, and the gate retries it', async () => {
    const clock = new ManualClock();
    let broken = true;
    let errors = 0;
    const local = new LocalDestinationRates(clock);
    const port: DestinationRates = {
      take: (d, l): Promise<RateTake> => (broken ? Promise.reject(new Error('database away')) : local.take(d, l)),
      peek: (d, l) => local.peek(d, l),
    };
    const gate = new RateGate(port, clock, undefined, () => errors++);
    let got: boolean | undefined;
    void gate.acquire('mx:a.test', () => limit).then((ok) => (got = ok));
    await clock.advance(2_500);
    assert.equal(got, undefined, 'no token, no delivery');
    assert.ok(errors >= 2, `retried (${errors} errors)`);
    broken = false;
    await clock.advance(1_000);
    assert.equal(got, true);
  });

  it('close() wakes every waiter with false', async () => {
    const clock = new ManualClock();
    const gate = new RateGate(new LocalDestinationRates(clock), clock);
    const results = await Promise.all([gate.acquire('mx:a.test', () => ({ perMinute: 1, burst: 1 })), (async () => {
      const p = gate.acquire('mx:a.test', () => ({ perMinute: 1, burst: 1 }));
      await settle();
      gate.close();
      return p;
    })()]);
    assert.deepEqual(results, [true, false]);
    assert.equal(await gate.acquire('mx:b.test', () => limit), false);
  });
});

runRatesConformance('in-process', async () => ({ nodes: [new LocalDestinationRates(systemClock)], close: async () => undefined }), { shared: false });
