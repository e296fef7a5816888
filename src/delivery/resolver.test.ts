/**
 * @module delivery/resolver.test
 * createDnsResolver against the fake DNS server (real UDP on 127.0.0.1 / ::1, port 0): answers
 * come back as records, and every failure becomes one of DNS_NOTFOUND / DNS_NODATA /
 * DNS_TEMPFAIL (NXDOMAIN, NODATA, SERVFAIL, timeout, a closed port). Also the server-string
 * form for --dns and the node-code mapping (a property: only the listed codes are permanent).
 *
 * The "closed port" case binds and closes a UDP socket to get a port nobody listens on; c-ares
 * then sees ICMP port unreachable (ECONNREFUSED) or, if that is filtered, a timeout: both must
 * come out as DNS_TEMPFAIL, which is what the test asserts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import fc from 'fast-check';
import { withFakeDns, type FakeZone } from '../../test/fakes/fake-dns.js';
import { createDnsResolver, formatDnsServer, ResolveError, toResolveError, DnsServerError } from './resolver.js';

const ZONE: FakeZone = {
  'example.test': { mx: [[10, 'mx1.example.test']] },
  'mx1.example.test': { a: ['127.0.0.1'], aaaa: ['::1'] },
  'null.test': { mx: [[0, '.']] },
  'broken.test': { servfail: true },
  'slow.test': { a: ['127.0.0.9'], delayMs: 1000 },
};

async function failure(p: Promise<unknown>): Promise<ResolveError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ResolveError, `not a ResolveError: ${String(err)}`);
    return err;
  }
  assert.fail('resolved');
}

test('MX, A and AAAA through the --dns server', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const r = createDnsResolver({ server: dns.server, timeoutMs: 300, tries: 1 });
    assert.deepEqual(await r.resolveMx('example.test'), [{ exchange: 'mx1.example.test', priority: 10 }]);
    assert.deepEqual(await r.resolveMx('null.test'), [{ exchange: '', priority: 0 }]);
    assert.deepEqual(await r.resolve4('mx1.example.test'), ['127.0.0.1']);
    assert.deepEqual(await r.resolve6('mx1.example.test'), ['::1']);
    assert.deepEqual(dns.queries, ['MX example.test', 'MX null.test', 'A mx1.example.test', 'AAAA mx1.example.test']);
  });
});

test('NXDOMAIN → DNS_NOTFOUND, NODATA → DNS_NODATA (both permanent), with the query as context', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const r = createDnsResolver({ server: dns.server, timeoutMs: 300, tries: 1 });
    const nx = await failure(r.resolveMx('nope.test'));
    assert.deepEqual([nx.code, nx.type, nx.query, nx.detail, nx.permanent], ['DNS_NOTFOUND', 'MX', 'nope.test', 'ENOTFOUND', true]);
    assert.match(nx.message, /^MX nope\.test: no such domain \(ENOTFOUND\)$/);
    const nodata = await failure(r.resolve6('example.test'));
    assert.deepEqual([nodata.code, nodata.type, nodata.detail, nodata.permanent], ['DNS_NODATA', 'AAAA', 'ENODATA', true]);
  });
});

test('SERVFAIL, a timeout and a closed server port → DNS_TEMPFAIL', async () => {
  await withFakeDns(ZONE, async (dns) => {
    const r = createDnsResolver({ server: dns.server, timeoutMs: 100, tries: 1 });
    const sf = await failure(r.resolveMx('broken.test'));
    assert.deepEqual([sf.code, sf.detail, sf.permanent], ['DNS_TEMPFAIL', 'ESERVFAIL', false]);
    const slow = await failure(r.resolve4('slow.test'));
    assert.deepEqual([slow.code, slow.detail], ['DNS_TEMPFAIL', 'ETIMEOUT']);
  });
  // A port nothing listens on: ICMP port unreachable (ECONNREFUSED) or a timeout, both temporary.
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  const r = createDnsResolver({ server: { host: '127.0.0.1', port }, timeoutMs: 100, tries: 1 });
  const dead = await failure(r.resolveMx('example.test'));
  assert.equal(dead.code, 'DNS_TEMPFAIL');
  assert.ok(['ECONNREFUSED', 'ETIMEOUT'].includes(dead.detail), dead.detail);
});

test('an IPv6 --dns server uses the bracket form', async () => {
  assert.equal(formatDnsServer({ host: '127.0.0.1', port: 5353 }), '127.0.0.1:5353');
  assert.equal(formatDnsServer({ host: '::1', port: 5353 }), '[::1]:5353');
  assert.throws(() => formatDnsServer({ host: 'dns.example', port: 53 }), (e: unknown) => e instanceof DnsServerError && e.code === 'DNS_BAD_SERVER');
  assert.throws(() => formatDnsServer({ host: '127.0.0.1', port: 0 }), DnsServerError);
  await withFakeDns(ZONE, async (dns) => {
    const r = createDnsResolver({ server: dns.server, timeoutMs: 300, tries: 1 });
    assert.deepEqual(await r.resolve4('mx1.example.test'), ['127.0.0.1']);
  }, { host: '::1' });
});

test('toResolveError: an error without a known code is TEMPFAIL; a ResolveError passes through', () => {
  assert.equal(toResolveError(new Error('boom'), 'A', 'x').code, 'DNS_TEMPFAIL');
  assert.equal(toResolveError('weird', 'A', 'x').detail, 'weird');
  const same = new ResolveError('DNS_NODATA', 'MX', 'x', 'ENODATA');
  assert.equal(toResolveError(same, 'A', 'y'), same);
});

test('only ENOTFOUND/EBADNAME and ENODATA are permanent; every other code defers', () => {
  fc.assert(
    fc.property(fc.oneof(fc.constantFrom('ENOTFOUND', 'EBADNAME', 'ENODATA', 'ESERVFAIL', 'ETIMEOUT', 'ECONNREFUSED', 'EREFUSED', 'EBADRESP'), fc.string()), (code) => {
      const e = toResolveError(Object.assign(new Error(code), { code }), 'MX', 'd');
      const expected = code === 'ENOTFOUND' || code === 'EBADNAME' ? 'DNS_NOTFOUND' : code === 'ENODATA' ? 'DNS_NODATA' : 'DNS_TEMPFAIL';
      assert.equal(e.code, expected);
      assert.equal(e.permanent, expected !== 'DNS_TEMPFAIL');
    }),
  );
});
