/**
 * The Authenticator with real argon2id hashes: right and wrong passwords, unknown users, the
 * authorization identity, failure windows per IP (IPv6 per /64) and per user on an injected clock, and the
 * bound on concurrent verifications (they run on the thread pool; the event loop stays free).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hash } from '@node-rs/argon2';
import { silentLogger } from '../obs/index.js';
import type { Clock } from '../util/index.js';
import type { UserEntry } from '../util/index.js';
import { Authenticator } from './auth.js';
import type { AuthLimits } from './auth.js';

function manualClock(): Clock & { advance(ms: number): void } {
  let now = 1_000_000;
  return {
    now: () => now,
    advance: (ms) => void (now += ms),
    setTimer: (_ms, onFire) => {
      const t = setImmediate(onFire);
      return { cancel: () => clearImmediate(t), refresh: () => undefined };
    },
  };
}

const LIMITS: AuthLimits = { failuresPerIp: 3, failuresPerUser: 2, failureWindow: 60_000, failureDelay: 0, maxVerifications: 2 };

async function users(): Promise<Map<string, UserEntry>> {
  return new Map([
    ['alice', { name: 'alice', hash: await hash('alice-pw'), senders: [] }],
    ['bob', { name: 'bob', hash: await hash('bob-pw'), senders: [] }],
  ]);
}

const creds = (username: string, password: string, authzid = '') => ({ mechanism: 'PLAIN' as const, authzid, username, password });

describe('Authenticator', () => {
  it('accepts the right password, refuses wrong ones, unknown users and a foreign authzid alike', async () => {
    const auth = new Authenticator(await users(), { ...LIMITS, failuresPerIp: 100, failuresPerUser: 100 }, manualClock(), silentLogger);
    const c = { ip: '192.0.2.1', session: 's' };
    assert.deepEqual(await auth.authenticate(c, creds('alice', 'alice-pw')), { ok: true, user: 'alice' });
    assert.deepEqual(await auth.authenticate(c, creds('alice', 'alice-pw', 'alice')), { ok: true, user: 'alice' });
    for (const bad of [creds('alice', 'bob-pw'), creds('nobody', 'alice-pw'), creds('alice', 'alice-pw', 'bob')]) {
      const r = await auth.authenticate(c, bad);
      assert.equal(r.ok ? 'ok' : `${r.reply.code} ${r.reply.enhanced}`, '535 5.7.8', JSON.stringify(bad));
    }
  });

  it('throttles per user (454) and per IP (421, close), and forgets after the window', async () => {
    const clock = manualClock();
    const auth = new Authenticator(await users(), LIMITS, clock, silentLogger);
    const a = { ip: '192.0.2.1', session: 'a' };
    const b = { ip: '192.0.2.2', session: 'b' };
    assert.equal((await auth.authenticate(a, creds('alice', 'x'))).ok, false);
    assert.equal((await auth.authenticate(b, creds('alice', 'y'))).ok, false);
    const user = await auth.authenticate(b, creds('alice', 'alice-pw'));
    assert.deepEqual(user.ok ? undefined : [user.reply.code, user.close], [454, undefined], 'alice is throttled, from any IP');
    assert.equal((await auth.authenticate(b, creds('bob', 'bob-pw'))).ok, true, 'bob is not');
    assert.equal((await auth.authenticate(a, creds('bob', 'x'))).ok, false);
    assert.equal((await auth.authenticate(a, creds('bob', 'x'))).ok, false);
    const ip = await auth.authenticate(a, creds('bob', 'bob-pw'));
    assert.deepEqual(ip.ok ? undefined : [ip.reply.code, ip.close], [421, true], 'IP a has failed 3 times');
    clock.advance(60_000);
    assert.equal((await auth.authenticate(a, creds('alice', 'alice-pw'))).ok, true, 'the window has passed');
  });

  it('counts IPv6 failures per /64: rotating through the prefix does not reset the count', async () => {
    const auth = new Authenticator(await users(), { ...LIMITS, failuresPerUser: 100 }, manualClock(), silentLogger);
    for (const host of ['1', '2', '3']) assert.equal((await auth.authenticate({ ip: `2001:db8:1:2::${host}`, session: host }, creds('bob', 'x'))).ok, false);
    const rotated = await auth.authenticate({ ip: '2001:db8:1:2:ffff::9', session: 'r' }, creds('bob', 'bob-pw'));
    assert.deepEqual(rotated.ok ? undefined : [rotated.reply.code, rotated.close], [421, true], 'the same /64 has failed 3 times');
    assert.equal((await auth.authenticate({ ip: '2001:db8:1:3::1', session: 'o' }, creds('bob', 'bob-pw'))).ok, true, 'the next /64 has not');
  });

  it('runs at most maxVerifications at once, off the event loop', async () => {
    const auth = new Authenticator(await users(), { ...LIMITS, failuresPerIp: 100, failuresPerUser: 100 }, manualClock(), silentLogger);
    let peak = 0;
    let ticks = 0;
    const sampler = setInterval(() => {
      ticks++;
      peak = Math.max(peak, auth.verificationsRunning);
    }, 1);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => auth.authenticate({ ip: `192.0.2.${i}`, session: `${i}` }, creds(i % 2 ? 'alice' : 'bob', i % 2 ? 'alice-pw' : 'bob-pw'))));
    clearInterval(sampler);
    assert.ok(results.every((r) => r.ok));
    assert.equal(peak, 2, `verifications in flight peaked at ${peak}`);
    assert.ok(ticks > 4, `timers kept firing while hashes were verified (${ticks} ticks)`);
    assert.equal(auth.verificationsRunning, 0);
  });
});
