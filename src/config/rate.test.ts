import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { defaultBurst, formatRate, parseRate } from './rate.js';
import { parseRoutes } from './routes.js';
import { loadConfig } from './load.js';

describe('rate syntax', () => {
  it('reads per second, minute and hour, bare numbers (per minute) and unlimited', () => {
    assert.deepEqual(parseRate('600/m'), { ok: true, perMinute: 600 });
    assert.deepEqual(parseRate('10/s'), { ok: true, perMinute: 600 });
    assert.deepEqual(parseRate('30/h'), { ok: true, perMinute: 0.5 });
    assert.deepEqual(parseRate(120), { ok: true, perMinute: 120 });
    assert.deepEqual(parseRate('120'), { ok: true, perMinute: 120 });
    assert.deepEqual(parseRate(' Unlimited '), { ok: true, perMinute: 'unlimited' });
    for (const bad of ['600/d', 'ten/m', '-1/m', '0/m', '', '1e9/s', true]) assert.equal(parseRate(bad).ok, false, String(bad));
  });

  it('defaults the burst to one second of the rate, at least 1, and prints rates back', () => {
    assert.equal(defaultBurst(600), 10);
    assert.equal(defaultBurst(1), 1);
    assert.equal(formatRate({ perMinute: 600, burst: 10 }), '10/s burst 10');
    assert.equal(formatRate({ perMinute: 90, burst: 2 }), '90/m burst 2');
    assert.equal(formatRate({ perMinute: 0.5, burst: 1 }), '30/h burst 1');
    assert.equal(formatRate(undefined), 'unlimited');
  });
});

describe('route rate', () => {
  it('parses rate and burst, and refuses what cannot be honoured, naming the route and the field', () => {
    const errors: string[] = [];
    const routes = parseRoutes('f.toml', [
      { pattern: 'a.test', mx: true, rate: '600/m', burst: 20 },
      { pattern: 'b.test', mx: true, rate: 60 },
      { pattern: 'c.test', mx: true, rate: 'unlimited' },
    ], errors, 'route');
    assert.deepEqual(errors, []);
    assert.deepEqual(routes?.map((r) => r.rate), [{ perMinute: 600, burst: 20 }, { perMinute: 60, burst: 1 }, 'unlimited']);
    const bad: string[] = [];
    parseRoutes('f.toml', [
      { pattern: 'a.test', mx: true, rate: 'fast' },
      { pattern: 'b.test', mx: true, burst: 5 },
      { pattern: 'c.test', mx: true, rate: '1/s', burst: 0 },
      { pattern: 'd.test', mx: true, rate: 'unlimited', burst: 3 },
    ], bad, 'route');
    assert.equal(bad.length, 4, bad.join('\n'));
    assert.match(bad[0] ?? '', /route\[0\]: "rate": "fast" is not a rate like "600\/m"/);
    assert.match(bad[1] ?? '', /route\[1\]: "burst" needs a "rate"/);
    assert.match(bad[2] ?? '', /route\[2\]: "burst" must be a whole number/);
    assert.match(bad[3] ?? '', /route\[3\]: "burst" means nothing with rate "unlimited"/);
  });

  it('--destination-rate and --destination-burst: validated with the setting named', () => {
    const ok = loadConfig({ argv: ['--destination-rate', '10/s', '--destination-burst', '3'], env: {}, hostname: 'h.test' });
    assert.ok(ok.ok);
    assert.equal(ok.config.delivery.destinationRate, '10/s');
    assert.equal(ok.config.delivery.destinationBurst, 3);
    const bad = loadConfig({ argv: ['--destination-rate', 'lots'], env: {}, hostname: 'h.test' });
    assert.ok(!bad.ok);
    assert.match(bad.errors.join('\n'), /--destination-rate: "lots" is not a rate/);
    const env = loadConfig({ argv: [], env: { POSTWIRE_DESTINATION_BURST: '4' }, hostname: 'h.test' });
    assert.ok(!env.ok);
    assert.match(env.errors.join('\n'), /POSTWIRE_DESTINATION_BURST: a burst needs a --destination-rate/);
  });
});
