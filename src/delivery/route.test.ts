/**
 * @module delivery/route.test
 * The route table and resolveRoute, with DNS from the fake server over real UDP: smart host
 * (address, name, localhost, unresolvable → defer), destination keys, MX routes with the
 * failures surfaced as {permanent, status}, address literals, the mxPort seam for sinks on port 0,
 * pattern precedence (a property: the chosen route is always the most specific match), route
 * validation, --smarthost as the one-route shorthand, domain normalisation, and the explain path.
 *
 * DNS is either the fake server (127.0.0.1, port 0, the resolver's only server) or `noDns`, a
 * resolver that fails the test when asked: smart hosts given as addresses, literals and pure
 * matching must never look anything up. Equal MX preferences use an injected random source.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seededRandom, withFakeDns, type FakeDns, type FakeZone } from '../../test/fakes/fake-dns.js';
import { createDnsResolver, type Resolver } from './resolver.js';
import {
  normalizeDomain, RouteConfigError, RouteTable, smarthostRoute, validateRoutes, withSmarthost,
  type RouteConfig, type RouteResult, type RouteTableOptions,
} from './route.js';

const ZONE: FakeZone = {
  'example.test': { mx: [[10, 'mx1.example.test'], [10, 'mx2.example.test'], [20, 'mx3.example.test']] },
  'mx1.example.test': { a: ['127.0.0.11'] },
  'mx2.example.test': { a: ['127.0.0.12'], aaaa: ['::1'] },
  'mx3.example.test': {},
  'relay.test': { a: ['127.0.0.25'] },
  'null.test': { mx: [[0, '.']] },
  'servfail.test': { servfail: true },
  'xn--bcher-kva.test': { mx: [[5, 'mx1.example.test']] },
  'sub.corp.test': { a: ['127.0.0.40'] },
};

/** A resolver that fails the test if asked anything: routes that must not touch DNS. */
const noDns: Resolver = {
  resolveMx: (d) => assert.fail(`unexpected MX ${d}`),
  resolve4: (d) => assert.fail(`unexpected A ${d}`),
  resolve6: (d) => assert.fail(`unexpected AAAA ${d}`),
};

function table(dns: FakeDns, routes: RouteConfig[], over: Partial<RouteTableOptions> = {}): RouteTable {
  return new RouteTable(routes, {
    resolver: createDnsResolver({ server: dns.server, timeoutMs: 200, tries: 1 }),
    random: seededRandom(7),
    ...over,
  });
}

function ok(r: RouteResult): Extract<RouteResult, { ok: true }> {
  assert.ok(r.ok, r.ok ? '' : `${r.code} ${r.status}: ${r.reason}\n${r.explain.join('\n')}`);
  return r;
}

test('--smarthost: every domain, literal or not, goes to the smart host; no MX lookup', async () => {
  const t = new RouteTable([smarthostRoute({ host: '127.0.0.1', port: 2525 })], { resolver: noDns });
  for (const domain of ['example.test', 'null.test', '[192.0.2.1]']) {
    const r = ok(await t.resolveRoute(domain));
    assert.equal(r.destination, 'smarthost:127.0.0.1:2525');
    assert.deepEqual(r.hosts, [{ name: '127.0.0.1', address: '127.0.0.1', port: 2525, preference: 0 }]);
    assert.equal(r.route.origin, 0);
  }
  const v6 = ok(await new RouteTable([smarthostRoute({ host: '::1', port: 587 })], { resolver: noDns }).resolveRoute('x.test'));
  assert.equal(v6.destination, 'smarthost:[::1]:587');
  const local = ok(await new RouteTable([smarthostRoute({ host: 'localhost', port: 25 })], { resolver: noDns }).resolveRoute('x.test'));
  assert.deepEqual(local.hosts.map((h) => h.address), ['127.0.0.1', '::1']);
});

test('a smart host by name is resolved by A/AAAA; one that does not resolve defers (our config, not their fault)', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const r = ok(await table(dns, [smarthostRoute({ host: 'Relay.Test', port: 587 })]).resolveRoute('example.test'));
    assert.equal(r.destination, 'smarthost:relay.test:587');
    assert.deepEqual(r.hosts, [{ name: 'relay.test', address: '127.0.0.25', port: 587, preference: 0 }]);
    assert.deepEqual(dns.queries.sort(), ['A relay.test', 'AAAA relay.test']);
    const bad = await table(dns, [smarthostRoute({ host: 'typo.test', port: 25 })]).resolveRoute('example.test');
    assert.deepEqual(bad.ok ? [] : [bad.permanent, bad.status, bad.code], [false, '4.4.3', 'ROUTE_NO_USABLE_HOST']);
  });
});

test('MX route: destination per domain, hosts in order, mxPort maps names to test sinks', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const ports = new Map([['mx1.example.test', 40001], ['mx2.example.test', 40002]]);
    // random() near 1: Fisher–Yates swaps nothing, so equal preferences keep the answer order.
    const t = table(dns, [], { mxPort: (name) => ports.get(name) ?? 25, random: () => 0.99 });
    const r = ok(await t.resolveRoute('EXAMPLE.test.'));
    assert.equal(r.destination, 'mx:example.test');
    assert.equal(r.route.origin, 'default');
    assert.deepEqual(r.hosts.map((h) => [h.name, h.address, h.port, h.preference]), [
      ['mx1.example.test', '127.0.0.11', 40001, 10],
      ['mx2.example.test', '127.0.0.12', 40002, 10],
      ['mx2.example.test', '::1', 40002, 10],
    ]);
    const fixed = ok(await table(dns, [], { mxPort: 2525 }).resolveRoute('example.test'));
    assert.ok(fixed.hosts.every((h) => h.port === 2525));
  });
});

test('MX route failures carry permanence and status: null MX 5.1.10, NXDOMAIN 5.1.2, SERVFAIL 4.4.3, bad domain 5.1.3', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const t = table(dns, []);
    const summary = async (d: string) => {
      const r = await t.resolveRoute(d);
      return r.ok ? 'ok' : `${r.permanent ? 'perm' : 'temp'} ${r.status} ${r.code}`;
    };
    assert.equal(await summary('null.test'), 'perm 5.1.10 ROUTE_NULL_MX');
    assert.equal(await summary('nowhere.test'), 'perm 5.1.2 ROUTE_NO_SUCH_DOMAIN');
    assert.equal(await summary('servfail.test'), 'temp 4.4.3 ROUTE_DNS_TEMPFAIL');
    assert.equal(await summary('exa mple.test'), 'perm 5.1.3 ROUTE_BAD_DOMAIN');
    assert.equal(await summary('192.0.2.1'), 'perm 5.1.3 ROUTE_BAD_DOMAIN');
    assert.equal(await summary(''), 'perm 5.1.3 ROUTE_BAD_DOMAIN');
  });
});

test('address literals on an MX route: straight to the address, destination keyed by the literal', async () => {
  const t = new RouteTable([], { resolver: noDns, mxPort: 2526 });
  const r = ok(await t.resolveRoute('[IPv6:2001:DB8::1]'));
  assert.equal(r.destination, 'mx:[IPv6:2001:db8::1]');
  assert.deepEqual(r.hosts, [{ name: '[IPv6:2001:db8::1]', address: '2001:db8::1', port: 2526, preference: 0 }]);
  assert.equal(ok(await t.resolveRoute('[127.0.0.1]')).destination, 'mx:[127.0.0.1]');
});

test('precedence: exact beats the longest wildcard beats *; wildcards match subdomains only', () => {
  const routes: RouteConfig[] = [
    { pattern: '*', nextHop: { kind: 'smarthost', host: '127.0.0.1', port: 1 } },
    { pattern: '*.test', nextHop: { kind: 'mx' }, tls: 'may' },
    { pattern: '*.corp.test', nextHop: { kind: 'smarthost', host: '127.0.0.1', port: 3 }, concurrency: 2 },
    { pattern: 'corp.test', nextHop: { kind: 'smarthost', host: '127.0.0.1', port: 4 } },
    { pattern: 'A.Deep.Corp.Test', nextHop: { kind: 'mx' }, retry: [1000] },
  ];
  const t = new RouteTable(routes, { resolver: noDns });
  const at = (d: string) => t.match(d).pattern;
  assert.equal(at('a.deep.corp.test'), 'a.deep.corp.test');
  assert.equal(at('b.deep.corp.test'), '*.corp.test');
  assert.equal(at('corp.test'), 'corp.test');
  assert.equal(at('x.test'), '*.test');
  assert.equal(at('test'), '*', '*.test does not match test itself');
  assert.equal(at('example.com'), '*');
  assert.equal(at('[192.0.2.1]'), '*');
  assert.equal(t.match('sub.corp.test').concurrency, 2);
  assert.equal(new RouteTable([], { resolver: noDns }).match('x.test').origin, 'default');
});

test('property: the chosen route is always the most specific matching pattern', () => {
  const label = fc.constantFrom('a', 'b', 'c');
  const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('.'));
  const pattern = fc.oneof(domain, domain.map((d) => `*.${d}`), fc.constant('*'));
  fc.assert(
    fc.property(fc.uniqueArray(pattern, { maxLength: 8 }), domain, (patterns, d) => {
      const routes = patterns.map((p): RouteConfig => ({ pattern: p, nextHop: { kind: 'mx' } }));
      const chosen = new RouteTable(routes, { resolver: noDns }).match(d).pattern;
      // Brute force: score every matching pattern, exact = ∞, wildcard = its suffix length, * = -1.
      const score = (p: string): number | undefined =>
        p === '*' ? -1 : p === d ? Infinity : p.startsWith('*.') && d.endsWith(p.slice(1)) ? p.length - 2 : undefined;
      let best = '*';
      let bestScore = -2;
      for (const p of patterns) {
        const s = score(p);
        if (s !== undefined && s > bestScore) [best, bestScore] = [p, s];
      }
      assert.equal(chosen, best);
    }),
  );
});

test('validateRoutes names every problem; the constructor throws RouteConfigError with them', () => {
  const bad: RouteConfig[] = [
    { pattern: 'ex*ample.com', nextHop: { kind: 'mx' } },
    { pattern: '*', nextHop: { kind: 'smarthost', host: 'relay', port: 0 } },
    { pattern: '*', nextHop: { kind: 'mx' }, concurrency: 0 },
    { pattern: 'a.test', nextHop: { kind: 'smarthost', host: 'a:b', port: 25 }, retry: [] },
    { pattern: '[192.0.2.1]', nextHop: { kind: 'mx' } },
    { pattern: 'b.test', nextHop: { kind: 'mx' }, tls: 'sometimes' as 'may' },
    { pattern: 'B.test.', nextHop: { kind: 'mx' } },
  ];
  const problems = validateRoutes(bad);
  const expected = [
    /routes\[0\]: pattern 'ex\*ample\.com'/,
    /routes\[1\] '\*': port 0 is not 1-65535/,
    /routes\[2\] '\*': the same pattern as routes\[1\]/,
    /routes\[2\] '\*': concurrency 0/,
    /routes\[3\] 'a\.test': smart host 'a:b' is not an IPv6 address/,
    /routes\[3\] 'a\.test': retry must be a non-empty list/,
    /routes\[4\]: pattern '\[192\.0\.2\.1\]': address literals/,
    /routes\[5\] 'b\.test': tls 'sometimes'/,
    /routes\[6\] 'B\.test\.': the same pattern as routes\[5\]/,
  ];
  assert.equal(problems.length, expected.length, problems.join('\n'));
  expected.forEach((re, i) => assert.match(problems[i] ?? '', re));
  assert.throws(() => new RouteTable(bad, { resolver: noDns }), (e: unknown) => e instanceof RouteConfigError && e.code === 'ROUTE_CONFIG' && e.problems.length === expected.length);
  assert.throws(() => new RouteTable([], { resolver: noDns, maxAddresses: 0 }), RouteConfigError);
  assert.deepEqual(validateRoutes([smarthostRoute({ host: '::1', port: 25 }), { pattern: '*.ok.test', nextHop: { kind: 'mx' }, retry: [60_000], tls: 'verify', concurrency: 3 }]), []);
});

test('withSmarthost: --smarthost replaces the catch-all and keeps the domain routes', () => {
  const routes: RouteConfig[] = [{ pattern: 'corp.test', nextHop: { kind: 'mx' } }, { pattern: '*', nextHop: { kind: 'mx' } }];
  const out = withSmarthost(routes, { host: '127.0.0.1', port: 2525 });
  assert.deepEqual(out, [routes[0], { pattern: '*', nextHop: { kind: 'smarthost', host: '127.0.0.1', port: 2525 } }]);
  assert.deepEqual(withSmarthost(routes, undefined), routes);
  const t = new RouteTable(out, { resolver: noDns });
  assert.equal(t.match('corp.test').nextHop.kind, 'mx');
  assert.equal(t.match('other.test').nextHop.kind, 'smarthost');
});

test('normalizeDomain: case, trailing dot, IDNA; refuses what cannot be a domain', () => {
  assert.deepEqual(normalizeDomain('Example.COM.'), { ok: true, domain: 'example.com' });
  assert.deepEqual(normalizeDomain('bücher.test'), { ok: true, domain: 'xn--bcher-kva.test' });
  assert.deepEqual(normalizeDomain('[ipv6:2001:DB8::1]'), { ok: true, domain: '[IPv6:2001:db8::1]' });
  assert.deepEqual(normalizeDomain('_dmarc.example.com'), { ok: true, domain: '_dmarc.example.com' });
  for (const bad of ['', '.', 'a..b', '-a.test', 'a-.test', 'a b.test', `${'x'.repeat(64)}.test`, '0x7f.1', '10.0.0.1', 'a/b.test']) {
    assert.equal(normalizeDomain(bad).ok, false, bad);
  }
});

test('explain: the whole decision path for an MX route, and for an IDN domain and a failure', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const t = table(dns, [{ pattern: '*.test', nextHop: { kind: 'mx' }, concurrency: 4, tls: 'may' }], { random: () => 0 });
    const r = ok(await t.resolveRoute('Example.Test'));
    assert.deepEqual(r.explain, [
      'domain Example.Test → example.test',
      "route '*.test' (routes[0]) → MX lookup; concurrency 4, tls may",
      'MX example.test: 10 mx1.example.test, 10 mx2.example.test, 20 mx3.example.test',
      'MX order: mx2.example.test (10), mx1.example.test (10), mx3.example.test (20)',
      'mx2.example.test: A 127.0.0.12; AAAA ::1',
      'mx1.example.test: A 127.0.0.11; AAAA none (DNS_NODATA)',
      'mx3.example.test: A none (DNS_NODATA); AAAA none (DNS_NODATA): skipped',
      'host 1: mx2.example.test 127.0.0.12:25 (preference 10)',
      'host 2: mx2.example.test [::1]:25 (preference 10)',
      'host 3: mx1.example.test 127.0.0.11:25 (preference 10)',
    ]);
    const idn = ok(await t.resolveRoute('BÜCHER.test'));
    assert.equal(idn.explain[0], 'domain BÜCHER.test → xn--bcher-kva.test');
    assert.equal(idn.destination, 'mx:xn--bcher-kva.test');
    const nul = await t.resolveRoute('null.test');
    assert.deepEqual(nul.explain.slice(-2), ['MX null.test: 0 .', 'bounce 5.1.10 ROUTE_NULL_MX: domain null.test accepts no mail (null MX, RFC 7505)']);
    const sf = await table(dns, []).resolveRoute('servfail.test');
    assert.deepEqual(sf.explain, [
      'domain servfail.test',
      "route '*' (implicit default) → MX lookup",
      'MX servfail.test: DNS_TEMPFAIL (ESERVFAIL)',
      'defer 4.4.3 ROUTE_DNS_TEMPFAIL: MX lookup for servfail.test failed temporarily (ESERVFAIL)',
    ]);
  });
});
