/**
 * MTA-STS (RFC 8461): the record and policy parsers and the MX matcher on their own; then the
 * whole path over loopback: the TXT record from the fake DNS server, the policy from a real HTTPS
 * server on 127.0.0.1 port 0 (its certificate from the test CA, its name resolved through the
 * same fake DNS), the cache by id, no redirects, the size cap; and the agent applying `enforce`
 * (an unlisted MX skipped, a listed one with a valid certificate used, a listed one with a bad
 * certificate deferred, never plain text) and `testing` (delivered, the would-be failure noted).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../obs/index.js';
import { systemClock } from '../util/index.js';
import { startFakeDns, type FakeDns, type FakeZone } from '../../test/fakes/fake-dns.js';
import { startFakeSmtp, type FakeSmtpServer } from '../../test/fakes/fake-smtp-server.js';
import { createTestCa, type TestCa, type TestLeaf } from '../../test/support/test-ca.js';
import { makeJob, makeRoute, smallBody } from '../../test/support/delivery.js';
import { createDeliveryAgent } from './agent.js';
import { MtaStsResolver, mxMatches, parseStsPolicy, parseStsRecord } from './mta-sts.js';
import { createDnsResolver } from './resolver.js';

describe('mta-sts: parsing and matching', () => {
  it('the TXT record: exactly one v=STSv1 with a 1-32 character id', () => {
    assert.deepEqual(parseStsRecord([['v=STSv1; id=2026-11-29;']]), { ok: false, reason: 'TXT record id "2026-11-29" is not 1-32 letters and digits' });
    assert.deepEqual(parseStsRecord([['v=STSv1; id=2026', '1129;'], ['something else']]), { ok: true, id: '20261129' });
    assert.equal(parseStsRecord([['v=STSv1; id=a'], ['v=STSv1; id=b']]).ok, false);
    assert.equal(parseStsRecord([['v=spf1 -all']]).ok, false);
  });

  it('the policy file: version, mode, max_age, mx lines (CRLF or LF); every required field checked', () => {
    assert.deepEqual(parseStsPolicy('version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n'), {
      ok: true, mode: 'enforce', mx: ['mail.example.com', '*.example.net'], maxAge: 604800,
    });
    assert.deepEqual(parseStsPolicy('version: STSv1\nmode: none\nmax_age: 0\n'), { ok: true, mode: 'none', mx: [], maxAge: 0 });
    assert.equal(parseStsPolicy('version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n').ok, false);
    assert.equal(parseStsPolicy('version: STSv1\nmode: enforce\nmax_age: 1\n').ok, false, 'enforce without mx');
    assert.equal(parseStsPolicy('version: STSv1\nmode: enforce\nmx: a\nmax_age: 31557601\n').ok, false, 'max_age over a year');
  });

  it('mx patterns: exact names, and *.suffix for exactly one leftmost label', () => {
    assert.ok(mxMatches('MX1.Example.com.', ['mx1.example.com']));
    assert.ok(mxMatches('mx1.example.net', ['*.example.net']));
    assert.ok(!mxMatches('a.mx1.example.net', ['*.example.net']));
    assert.ok(!mxMatches('example.net', ['*.example.net']));
    assert.ok(!mxMatches('mx9.example.com', ['mx1.example.com']));
  });
});

describe('mta-sts: fetched over HTTPS, applied by the agent', () => {
  let ca: TestCa;
  let policyLeaf: TestLeaf;
  let mx2Leaf: TestLeaf;
  let https: Server;
  let httpsPort: number;
  let dns: FakeDns;
  const requests: string[] = [];
  /** What the policy server answers, per domain (the Host header). */
  const answers = new Map<string, { status: number; body: string; type?: string; location?: string }>();
  const zone: FakeZone = {
    '_mta-sts.dst.test': { txt: ['v=STSv1; id=one;'] },
    'mta-sts.dst.test': { a: ['127.0.0.1'] },
    '_mta-sts.moved.test': { txt: ['v=STSv1; id=x1;'] },
    'mta-sts.moved.test': { a: ['127.0.0.1'] },
    '_mta-sts.big.test': { txt: ['v=STSv1; id=x1;'] },
    'mta-sts.big.test': { a: ['127.0.0.1'] },
  };

  before(async () => {
    ca = await createTestCa();
    policyLeaf = await ca.issue(['mta-sts.dst.test', 'mta-sts.moved.test', 'mta-sts.big.test']);
    mx2Leaf = await ca.issue(['mx2.test']);
    https = createServer({ key: policyLeaf.key, cert: policyLeaf.cert }, (req, res) => {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      requests.push(`${host}${req.url ?? ''}`);
      const a = answers.get(host) ?? { status: 404, body: 'no' };
      res.writeHead(a.status, { 'content-type': a.type ?? 'text/plain', ...(a.location !== undefined ? { location: a.location } : {}) });
      res.end(a.body);
    });
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    httpsPort = (https.address() as AddressInfo).port;
    dns = await startFakeDns(zone);
  });
  after(async () => {
    await dns.close();
    await new Promise<void>((resolve) => https.close(() => resolve()));
  });

  const sts = (): MtaStsResolver =>
    new MtaStsResolver({ resolver: createDnsResolver({ server: dns.server, timeoutMs: 300, tries: 1 }), clock: systemClock, port: httpsPort, timeoutMs: 2000, maxBytes: 1024, ca: ca.ca });

  it('fetches the policy once per id (cached), refuses redirects and oversize files, survives a missing record', async () => {
    answers.set('mta-sts.dst.test', { status: 200, body: 'version: STSv1\r\nmode: enforce\r\nmx: mx2.test\r\nmax_age: 86400\r\n' });
    answers.set('mta-sts.moved.test', { status: 301, body: '', location: 'https://elsewhere.test/' });
    answers.set('mta-sts.big.test', { status: 200, body: `version: STSv1\nmode: enforce\nmax_age: 60\n${'mx: a.test\n'.repeat(200)}` });
    const r = sts();
    requests.length = 0;
    const first = await r.policyFor('dst.test');
    assert.equal(first.policy?.mode, 'enforce');
    assert.deepEqual(first.policy?.mx, ['mx2.test']);
    const again = await r.policyFor('dst.test');
    assert.match(again.detail, /cached/);
    assert.deepEqual(requests, ['mta-sts.dst.test/.well-known/mta-sts.txt'], 'one fetch for one id');
    // Deliveries to one domain at once share one lookup: one fetch for a new id, not one each.
    zone['_mta-sts.dst.test'] = { txt: ['v=STSv1; id=two;'] };
    requests.length = 0;
    const together = await Promise.all(Array.from({ length: 5 }, () => r.policyFor('dst.test')));
    zone['_mta-sts.dst.test'] = { txt: ['v=STSv1; id=one;'] };
    assert.ok(together.every((l) => l.policy?.id === 'two'));
    assert.deepEqual(requests, ['mta-sts.dst.test/.well-known/mta-sts.txt'], 'five deliveries at once, one fetch');
    const moved = await r.policyFor('moved.test');
    assert.equal(moved.policy, undefined);
    assert.match(moved.detail, /HTTP 301 .*redirects are not followed/);
    const big = await r.policyFor('big.test');
    assert.equal(big.policy, undefined);
    assert.match(big.detail, /larger than 1024 octets/);
    const none = await r.policyFor('nothing.test');
    assert.equal(none.policy, undefined);
    assert.match(none.detail, /delivering as without MTA-STS/);
  });

  async function sinks(): Promise<[FakeSmtpServer, FakeSmtpServer]> {
    const mx1Leaf = await ca.issue(['mx1.test']);
    return [await startFakeSmtp({ tls: mx1Leaf }), await startFakeSmtp({ tls: mx2Leaf })];
  }

  it('enforce: the unlisted MX is skipped, the listed one is used with a verified certificate', async () => {
    answers.set('mta-sts.dst.test', { status: 200, body: 'version: STSv1\r\nmode: enforce\r\nmx: mx2.test\r\nmax_age: 86400\r\n' });
    const [mx1, mx2] = await sinks();
    const agent = createDeliveryAgent({ hostname: 'relay.test', clock: systemClock, log: silentLogger, tlsPolicy: 'none', tlsCa: ca.ca, mtaSts: sts() });
    try {
      const r = await agent.deliver(makeRoute(mx1.port, mx2.port), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(r.outcomes[0]?.kind, 'delivered', r.outcomes[0]?.reply);
      assert.equal(mx1.sessions, 0, 'the unlisted MX is never contacted, although it is preferred');
      assert.equal(mx2.delivered.length, 1);
      assert.ok(mx2.delivered[0]?.tls, 'TLS although --tls-policy none: enforce raises it to verify');
      assert.match(r.note ?? '', /mx1\.test\[127\.0\.0\.1\]:\d+: skipped, not listed by the MTA-STS policy of dst\.test/);
      assert.match(r.note ?? '', /certificate verified/);
    } finally {
      await agent.close();
      await mx1.close();
      await mx2.close();
    }
  });

  it('enforce: a listed MX whose certificate does not verify is refused (deferred 4.7.5), never plain text', async () => {
    answers.set('mta-sts.dst.test', { status: 200, body: 'version: STSv1\r\nmode: enforce\r\nmx: mx1.test\r\nmax_age: 86400\r\n' });
    const wrong = await ca.issue(['someone-else.test']);
    const mx1 = await startFakeSmtp({ tls: wrong });
    const agent = createDeliveryAgent({ hostname: 'relay.test', clock: systemClock, log: silentLogger, tlsCa: ca.ca, mtaSts: sts() });
    try {
      const r = await agent.deliver(makeRoute(mx1.port), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(r.outcomes[0]?.kind, 'deferred');
      assert.match(r.outcomes[0]?.reply ?? '', /^451 4\.7\.5 TLS required by policy verify \(MTA-STS enforce\): certificate name mismatch/);
      assert.ok(!mx1.lines.some((l) => l.line.startsWith('MAIL')));
    } finally {
      await agent.close();
      await mx1.close();
    }
  });

  it('testing: delivered as without a policy (here in plain text to an unlisted MX), the failure noted', async () => {
    zone['_mta-sts.dst.test'] = { txt: ['v=STSv1; id=two;'] };
    answers.set('mta-sts.dst.test', { status: 200, body: 'version: STSv1\nmode: testing\nmx: mx2.test\nmax_age: 86400\n' });
    const mx1 = await startFakeSmtp({});
    const agent = createDeliveryAgent({ hostname: 'relay.test', clock: systemClock, log: silentLogger, tlsCa: ca.ca, mtaSts: sts() });
    try {
      const r = await agent.deliver(makeRoute(mx1.port), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(r.outcomes[0]?.kind, 'delivered');
      assert.equal(mx1.delivered.length, 1);
      assert.match(r.note ?? '', /MTA-STS policy id two \(mode testing, fetched\)/);
      assert.match(r.note ?? '', /MTA-STS testing for dst\.test: enforce would refuse mx1\.test\[127\.0\.0\.1\]:\d+: not listed \(mx mx2\.test\)/);
    } finally {
      await agent.close();
      await mx1.close();
    }
  });
});
