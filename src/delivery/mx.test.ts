/**
 * @module delivery/mx.test
 * Domain → ordered addresses, against the fake DNS server over real UDP through
 * createDnsResolver: MX preference order with deterministic shuffling among equals (seeded
 * random), implicit MX (A/AAAA fallback), address-family order, null MX, NXDOMAIN, SERVFAIL and
 * timeouts, unresolvable and CNAME MX hosts, the host and address caps, address literals.
 * orderMx is also checked as a property: sorted by preference, a permutation, reproducible.
 *
 * Every test runs its own fake server on 127.0.0.1 port 0 and passes it as the resolver's only
 * server, so nothing here can reach a real DNS server and the tests pass with no network.
 * Timeouts are short (150 ms, one try) so the timeout cases cost a fraction of a second.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seededRandom, withFakeDns, type FakeDns, type FakeZone } from '../../test/fakes/fake-dns.js';
import { createDnsResolver } from './resolver.js';
import {
  MAX_ADDRESSES, MAX_MX_HOSTS, orderMx, parseDomainLiteral, resolveDomainHosts,
  type AddressOrder, type HostLookupOptions, type HostsResult,
} from './mx.js';

const ZONE: FakeZone = {
  'pref.test': { mx: [[20, 'b.pref.test'], [10, 'a.pref.test'], [30, 'c.pref.test']] },
  'a.pref.test': { a: ['127.0.0.1'] },
  'case.test': { mx: [[10, 'A.PREF.Test.']] },
  'b.pref.test': { a: ['127.0.0.2'] },
  'c.pref.test': { a: ['127.0.0.3'] },
  'equal.test': { mx: [[10, 'e1.equal.test'], [10, 'e2.equal.test'], [10, 'e3.equal.test'], [20, 'backup.equal.test']] },
  'e1.equal.test': { a: ['127.0.1.1'] },
  'e2.equal.test': { a: ['127.0.1.2'] },
  'e3.equal.test': { a: ['127.0.1.3'] },
  'backup.equal.test': { a: ['127.0.1.9'] },
  'implicit.test': { a: ['127.0.2.1'], aaaa: ['::1'] },
  'v6only.test': { aaaa: ['2001:db8::25'] },
  'dual.test': { mx: [[10, 'mx.dual.test']] },
  'mx.dual.test': { a: ['127.0.3.1', '127.0.3.2'], aaaa: ['::1', '2001:db8::1'] },
  'null.test': { mx: [[0, '.']] },
  'nullish.test': { mx: [[0, '.'], [10, 'a.pref.test']] },
  'null10.test': { mx: [[10, '.']] },
  'servfail.test': { servfail: true },
  'slow.test': { mx: [[10, 'a.pref.test']], delayMs: 1000 },
  'nothing.test': { cname: 'gone.test' },
  'bare.test': {},
  'deadfirst.test': { mx: [[10, 'ghost.deadfirst.test'], [20, 'alive.deadfirst.test']] },
  'alive.deadfirst.test': { a: ['127.0.4.2'] },
  'alldead.test': { mx: [[10, 'ghost1.alldead.test'], [20, 'ghost2.alldead.test'], [30, 'flaky.alldead.test']] },
  'flaky.alldead.test': { servfail: true },
  'alias.test': { mx: [[10, 'cname.alias.test'], [20, 'dangling.alias.test']] },
  'cname.alias.test': { cname: 'real.alias.test' },
  'real.alias.test': { a: ['127.0.5.1'] },
  'dangling.alias.test': { cname: 'missing.alias.test' },
  'many.test': { mx: [1, 2, 3, 4, 5, 6, 7].map((i) => [i, `m${i}.many.test`] as const) },
  ...Object.fromEntries([1, 2, 3, 4, 5, 6, 7].map((i) => [`m${i}.many.test`, { a: [`127.0.6.${i}`, `127.0.7.${i}`, `127.0.8.${i}`] }])),
  'dup.test': { mx: [[10, 'one.dup.test'], [20, 'two.dup.test']] },
  'one.dup.test': { a: ['127.0.9.1'] },
  'two.dup.test': { a: ['127.0.9.1', '127.0.9.2'] },
};

function opts(dns: FakeDns, over: Partial<HostLookupOptions> = {}): HostLookupOptions {
  return {
    resolver: createDnsResolver({ server: dns.server, timeoutMs: 150, tries: 1 }),
    random: seededRandom(1),
    mxPort: () => 25,
    maxMxHosts: MAX_MX_HOSTS,
    maxAddresses: MAX_ADDRESSES,
    addressOrder: 'ipv4-first',
    ...over,
  };
}

async function hostsOf(dns: FakeDns, domain: string, over: Partial<HostLookupOptions> = {}): Promise<{ r: HostsResult; explain: string[] }> {
  const explain: string[] = [];
  return { r: await resolveDomainHosts(domain, opts(dns, over), explain), explain };
}

function names(r: HostsResult): string[] {
  assert.ok(r.ok, r.ok ? '' : `${r.code}: ${r.reason}`);
  return r.hosts.map((h) => `${h.name} ${h.address}`);
}

function failed(r: HostsResult): [boolean, string, string] {
  assert.ok(!r.ok, 'expected a failure');
  return [r.permanent, r.status, r.code];
}

test('MX hosts come in preference order, whatever the answer order', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const { r } = await hostsOf(dns, 'pref.test');
    assert.deepEqual(names(r), ['a.pref.test 127.0.0.1', 'b.pref.test 127.0.0.2', 'c.pref.test 127.0.0.3']);
    assert.ok(r.ok && r.hosts.every((h) => h.port === 25));
    assert.deepEqual(r.ok && r.hosts.map((h) => h.preference), [10, 20, 30]);
    assert.deepEqual(names((await hostsOf(dns, 'case.test')).r), ['a.pref.test 127.0.0.1'], 'exchange names are lower-cased');
  });
});

test('equal preferences are shuffled by the injected random: same seed, same order; seeds reach every order', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const orders = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const first = names((await hostsOf(dns, 'equal.test', { random: seededRandom(seed) })).r);
      const again = names((await hostsOf(dns, 'equal.test', { random: seededRandom(seed) })).r);
      assert.deepEqual(first, again, `seed ${seed} is reproducible`);
      assert.equal(first[3], 'backup.equal.test 127.0.1.9', 'the less preferred host stays last');
      orders.add(first.slice(0, 3).join(','));
    }
    assert.equal(orders.size, 6, 'all 3! orders of the equal hosts occur');
    // random() always 0: Fisher–Yates swaps each position with the group's first.
    const zero = names((await hostsOf(dns, 'equal.test', { random: () => 0 })).r);
    assert.deepEqual(zero.slice(0, 3), ['e2.equal.test 127.0.1.2', 'e3.equal.test 127.0.1.3', 'e1.equal.test 127.0.1.1']);
  });
});

test('no MX records: the domain itself, A then AAAA by default (implicit MX)', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const { r, explain } = await hostsOf(dns, 'implicit.test');
    assert.deepEqual(names(r), ['implicit.test 127.0.2.1', 'implicit.test ::1']);
    assert.ok(r.ok && r.hosts.every((h) => h.preference === 0));
    assert.ok(explain.some((l) => /implicit MX/.test(l)));
    assert.deepEqual(names((await hostsOf(dns, 'v6only.test')).r), ['v6only.test 2001:db8::25']);
  });
});

test('a host with A and AAAA: the address order option decides, DNS order kept within a family', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const by = async (addressOrder: AddressOrder) => names((await hostsOf(dns, 'dual.test', { addressOrder })).r).map((n) => n.split(' ')[1]);
    assert.deepEqual(await by('ipv4-first'), ['127.0.3.1', '127.0.3.2', '::1', '2001:db8::1']);
    assert.deepEqual(await by('ipv6-first'), ['::1', '2001:db8::1', '127.0.3.1', '127.0.3.2']);
    assert.deepEqual(await by('ipv4-only'), ['127.0.3.1', '127.0.3.2']);
    assert.deepEqual(await by('ipv6-only'), ['::1', '2001:db8::1']);
    const { r } = await hostsOf(dns, 'v6only.test', { addressOrder: 'ipv4-only' });
    assert.deepEqual(failed(r), [true, '5.4.4', 'ROUTE_NO_ADDRESS']);
  });
});

test('null MX bounces at once with 5.1.10 and looks nothing else up', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const { r } = await hostsOf(dns, 'null.test');
    assert.deepEqual(failed(r), [true, '5.1.10', 'ROUTE_NULL_MX']);
    assert.deepEqual(dns.queries, ['MX null.test']);
    // A root exchange at a non-zero preference is read as a (sloppy) null MX too.
    assert.deepEqual(failed((await hostsOf(dns, 'null10.test')).r), [true, '5.1.10', 'ROUTE_NULL_MX']);
    // '.' mixed with a real MX is not a null MX: the '.' is ignored.
    const mixed = await hostsOf(dns, 'nullish.test');
    assert.deepEqual(names(mixed.r), ['a.pref.test 127.0.0.1']);
    assert.ok(mixed.explain.some((l) => /ignored 1 '\.' exchange/.test(l)));
  });
});

test('NXDOMAIN bounces 5.1.2; SERVFAIL and a timeout defer 4.4.3; no MX and no address bounces 5.4.4', async () => {
  await withFakeDns(ZONE, async (dns) => {
    assert.deepEqual(failed((await hostsOf(dns, 'nonexistent.test')).r), [true, '5.1.2', 'ROUTE_NO_SUCH_DOMAIN']);
    assert.deepEqual(failed((await hostsOf(dns, 'servfail.test')).r), [false, '4.4.3', 'ROUTE_DNS_TEMPFAIL']);
    assert.deepEqual(failed((await hostsOf(dns, 'slow.test')).r), [false, '4.4.3', 'ROUTE_DNS_TEMPFAIL']);
    assert.deepEqual(failed((await hostsOf(dns, 'bare.test')).r), [true, '5.4.4', 'ROUTE_NO_ADDRESS']);
    // A name that is only a dangling CNAME: the MX query says NXDOMAIN (RFC 6604).
    assert.deepEqual(failed((await hostsOf(dns, 'nothing.test')).r), [true, '5.1.2', 'ROUTE_NO_SUCH_DOMAIN']);
  });
});

test('a nonexistent first MX is skipped; when every MX host fails, the mail defers', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const { r, explain } = await hostsOf(dns, 'deadfirst.test');
    assert.deepEqual(names(r), ['alive.deadfirst.test 127.0.4.2']);
    assert.ok(explain.includes('ghost.deadfirst.test: A none (DNS_NOTFOUND); AAAA none (DNS_NOTFOUND): skipped'), explain.join('\n'));
    const all = await hostsOf(dns, 'alldead.test');
    assert.deepEqual(failed(all.r), [false, '4.4.3', 'ROUTE_NO_USABLE_HOST']);
    assert.match(all.r.ok ? '' : all.r.reason, /ghost1\.alldead\.test \(DNS_NOTFOUND\), ghost2\.alldead\.test \(DNS_NOTFOUND\), flaky\.alldead\.test \(DNS_TEMPFAIL\)/);
  });
});

test('an MX host that is a CNAME is followed; a dangling CNAME is skipped', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const { r, explain } = await hostsOf(dns, 'alias.test');
    assert.deepEqual(names(r), ['cname.alias.test 127.0.5.1']);
    assert.ok(explain.some((l) => l.startsWith('dangling.alias.test:') && l.endsWith('skipped')));
  });
});

test('caps: at most MAX_MX_HOSTS hosts looked up and MAX_ADDRESSES addresses kept', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const { r, explain } = await hostsOf(dns, 'many.test');
    assert.ok(r.ok);
    assert.equal(r.hosts.length, MAX_ADDRESSES);
    assert.deepEqual([...new Set(r.hosts.map((h) => h.name))], ['m1.many.test', 'm2.many.test', 'm3.many.test', 'm4.many.test']);
    assert.ok(!dns.queries.some((q) => /m[67]\.many\.test/.test(q)), 'the 6th and 7th MX are never looked up');
    assert.ok(explain.some((l) => l.startsWith('ignored 2 less preferred MX host(s)')));
    assert.ok(explain.some((l) => l.startsWith('dropped 5 address(es)')));
    const small = await hostsOf(dns, 'many.test', { maxMxHosts: 1, maxAddresses: 2 });
    assert.deepEqual(names(small.r), ['m1.many.test 127.0.6.1', 'm1.many.test 127.0.7.1']);
  });
});

test('an address shared by two MX hosts is tried once, under the more preferred name', async () => {
  await withFakeDns(ZONE, async (dns) => {
    assert.deepEqual(names((await hostsOf(dns, 'dup.test')).r), ['one.dup.test 127.0.9.1', 'two.dup.test 127.0.9.2']);
  });
});

test('address literals go to the address with no DNS; the port comes from mxPort', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const port = (name: string, address: string) => (address === '127.0.0.1' ? 2525 : name.length);
    const v4 = await hostsOf(dns, '[127.0.0.1]', { mxPort: port });
    assert.deepEqual(v4.r, { ok: true, hosts: [{ name: '[127.0.0.1]', address: '127.0.0.1', port: 2525, preference: 0 }] });
    const v6 = await hostsOf(dns, '[IPv6:2001:db8::1]', { mxPort: port });
    assert.deepEqual(v6.r.ok && v6.r.hosts[0], { name: '[IPv6:2001:db8::1]', address: '2001:db8::1', port: 18, preference: 0 });
    assert.deepEqual(failed((await hostsOf(dns, '[2001:db8::1]')).r), [true, '5.1.3', 'ROUTE_BAD_DOMAIN']);
    assert.deepEqual(failed((await hostsOf(dns, '[300.1.1.1]')).r), [true, '5.1.3', 'ROUTE_BAD_DOMAIN']);
    assert.deepEqual(dns.queries, []);
  });
});

test('parseDomainLiteral', () => {
  assert.equal(parseDomainLiteral('example.com'), undefined);
  assert.deepEqual(parseDomainLiteral('[192.0.2.1]'), { ok: true, address: '192.0.2.1' });
  assert.deepEqual(parseDomainLiteral('[ipv6:::1]'), { ok: true, address: '::1' });
  for (const bad of ['[192.0.2.1', '[]', '[x:y]', '[IPv6:fe80::1%eth0]', '[IPv6:192.0.2.1]', '[192.0.2.1]x']) {
    assert.equal(parseDomainLiteral(bad)?.ok, false, bad);
  }
});

test('orderMx: sorted by preference, a permutation, equal groups only reordered, reproducible', () => {
  const record = fc.record({ exchange: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), priority: fc.integer({ min: 0, max: 4 }) });
  fc.assert(
    fc.property(fc.array(record, { maxLength: 12 }), fc.integer(), (records, seed) => {
      const out = orderMx(records, seededRandom(seed));
      assert.deepEqual(orderMx(records, seededRandom(seed)), out);
      for (let i = 1; i < out.length; i++) assert.ok((out[i - 1]?.priority ?? 0) <= (out[i]?.priority ?? 0));
      const key = (r: { exchange: string; priority: number }) => `${r.priority}/${r.exchange}`;
      assert.deepEqual(out.map(key).sort(), records.map(key).sort());
    }),
  );
  // A broken random source (1, NaN, negative) still yields a permutation.
  for (const bad of [() => 1, () => Number.NaN, () => -3]) {
    const recs = [{ exchange: 'x', priority: 1 }, { exchange: 'y', priority: 1 }, { exchange: 'z', priority: 1 }];
    assert.deepEqual(orderMx(recs, bad).map((r) => r.exchange).sort(), ['x', 'y', 'z']);
  }
});
