/**
 * @module test/fakes/fake-dns.test
 * The fake DNS server, checked with node's own `dns.promises.Resolver` (c-ares) pointed at it:
 * MX (with null MX and preferences), A, AAAA, CNAME chains, NXDOMAIN, NODATA, SERVFAIL, a
 * delayed and a dropped name (client timeouts), the query log, IPv6 listening, and the wire
 * codec's compressed-name decoding on malformed input (fast-check: never throws anything but Error).
 *
 * These tests check the fake against the real client, so the delivery tests that build on it
 * (resolver, mx, route) can trust that what c-ares reports is what the zone says. Timeouts use
 * 100–300 ms per try; the slow and dropped names exist only to make the client give up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { createSocket } from 'node:dgram';
import fc from 'fast-check';
import { decodeName, encodeName, startFakeDns, type FakeZone } from './fake-dns.js';

const ZONE: FakeZone = {
  'example.test': { mx: [[10, 'mx1.example.test'], [20, 'mx2.example.test']], a: ['192.0.2.1'] },
  'mx1.example.test': { a: ['127.0.0.1', '127.0.0.2'], aaaa: ['::1'] },
  'mx2.example.test': { aaaa: ['2001:db8::25'] },
  'null.test': { mx: [[0, '.']] },
  'alias.example.test': { cname: 'mx1.example.test' },
  'dangling.example.test': { cname: 'nowhere.example.test' },
  'broken.test': { servfail: true },
  'slow.test': { a: ['192.0.2.9'], delayMs: 400 },
  'dropped.test': { a: ['192.0.2.8'], drop: true },
  'flaky.test': { a: ['192.0.2.7'], drop: 1 },
  '_mta-sts.example.test': { txt: ['v=STSv1; id=20261129;', ['part one ', 'x'.repeat(300)]] },
};

async function withFake(run: (r: Resolver, queries: string[]) => Promise<void>, timeout = 300, tries = 1): Promise<void> {
  const dns = await startFakeDns(ZONE);
  try {
    const r = new Resolver({ timeout, tries });
    r.setServers([`127.0.0.1:${dns.port}`]);
    await run(r, dns.queries);
  } finally {
    await dns.close();
  }
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

test('MX records with preferences, and a null MX as the empty exchange', async () => {
  await withFake(async (r) => {
    const mx = await r.resolveMx('example.test');
    assert.deepEqual(
      [...mx].sort((a, b) => a.priority - b.priority),
      [{ exchange: 'mx1.example.test', priority: 10 }, { exchange: 'mx2.example.test', priority: 20 }],
    );
    assert.deepEqual(await r.resolveMx('NULL.test.'), [{ exchange: '', priority: 0 }]);
  });
});

test('TXT: each record as its character-strings, a long one split at 255 octets; none is NODATA', async () => {
  await withFake(async (r) => {
    const txt = await r.resolveTxt('_mta-sts.example.test');
    assert.deepEqual(
      txt.map((parts) => parts.join('')).sort(),
      ['part one ' + 'x'.repeat(300), 'v=STSv1; id=20261129;'].sort(),
    );
    assert.ok(txt.some((parts) => parts.length === 3 && parts[1]?.length === 255), 'the 300-octet string comes as 255 + 45');
    assert.equal(await code(r.resolveTxt('example.test')), 'ENODATA');
  });
});

test('A and AAAA, case-insensitive names', async () => {
  await withFake(async (r) => {
    assert.deepEqual(await r.resolve4('MX1.Example.Test'), ['127.0.0.1', '127.0.0.2']);
    assert.deepEqual(await r.resolve6('mx1.example.test'), ['::1']);
    assert.deepEqual(await r.resolve6('mx2.example.test'), ['2001:db8::25']);
  });
});

test('CNAME is followed inside the zone; a dangling one is NXDOMAIN', async () => {
  await withFake(async (r) => {
    assert.deepEqual(await r.resolve4('alias.example.test'), ['127.0.0.1', '127.0.0.2']);
    assert.deepEqual(await r.resolveCname('alias.example.test'), ['mx1.example.test']);
    assert.equal(await code(r.resolve4('dangling.example.test')), 'ENOTFOUND');
  });
});

test('NXDOMAIN, NODATA and SERVFAIL map to ENOTFOUND, ENODATA and ESERVFAIL', async () => {
  await withFake(async (r) => {
    assert.equal(await code(r.resolveMx('nope.test')), 'ENOTFOUND');
    assert.equal(await code(r.resolve4('nope.test')), 'ENOTFOUND');
    assert.equal(await code(r.resolveMx('mx1.example.test')), 'ENODATA');
    assert.equal(await code(r.resolve4('mx2.example.test')), 'ENODATA');
    assert.equal(await code(r.resolveMx('broken.test')), 'ESERVFAIL');
    assert.equal(await code(r.resolve4('broken.test')), 'ESERVFAIL');
  });
});

test('a delay longer than the timeout, and a dropped name, time out; a drop of 1 is retried', async () => {
  await withFake(
    async (r, queries) => {
      assert.equal(await code(r.resolve4('slow.test')), 'ETIMEOUT');
      assert.equal(await code(r.resolve4('dropped.test')), 'ETIMEOUT');
      assert.ok(queries.filter((q) => q === 'A dropped.test').length >= 1);
    },
    100,
    1,
  );
  await withFake(async (r, queries) => {
    assert.deepEqual(await r.resolve4('flaky.test'), ['192.0.2.7']);
    assert.equal(queries.filter((q) => q === 'A flaky.test').length, 2);
  }, 100, 3);
  await withFake(async (r) => assert.deepEqual(await r.resolve4('slow.test'), ['192.0.2.9']), 2000, 1);
});

test('every query is recorded as TYPE name, lower case', async () => {
  await withFake(async (r, queries) => {
    await r.resolveMx('Example.TEST');
    await code(r.resolve6('nope.test'));
    assert.deepEqual(queries, ['MX example.test', 'AAAA nope.test']);
  });
});

test('listens on ::1 for the IPv6 server form', async () => {
  const dns = await startFakeDns(ZONE, { host: '::1' });
  try {
    const r = new Resolver({ timeout: 300, tries: 1 });
    r.setServers([`[::1]:${dns.port}`]);
    assert.deepEqual(await r.resolve4('mx1.example.test'), ['127.0.0.1', '127.0.0.2']);
    assert.deepEqual(dns.server, { host: '::1', port: dns.port });
  } finally {
    await dns.close();
  }
});

test('a hand-built query with a compressed name is answered; garbage gets FORMERR or silence', async () => {
  const dns = await startFakeDns(ZONE);
  const sock = createSocket('udp4');
  try {
    const ask = (bytes: Buffer) =>
      new Promise<Buffer | undefined>((resolve) => {
        const t = setTimeout(() => { sock.off('message', on); resolve(undefined); }, 200);
        const on = (m: Buffer) => { clearTimeout(t); sock.off('message', on); resolve(m); };
        sock.on('message', on);
        sock.send(bytes, dns.port, '127.0.0.1');
      });
    // Header (id 0x1234, RD, one question), then the question name as a pointer to a name
    // placed after the question fields: legal wire format, though no resolver writes it.
    const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    const qname = encodeName('mx1.example.test');
    const question = Buffer.concat([Buffer.from([0xc0, 12 + 6]), Buffer.from([0, 1, 0, 1]), qname]);
    const reply = await ask(Buffer.concat([header, question]));
    assert.ok(reply);
    assert.equal(reply.readUInt16BE(0), 0x1234);
    assert.equal(reply.readUInt16BE(2) & 0x000f, 0, 'NOERROR');
    assert.equal(reply.readUInt16BE(6), 2, 'two A records');
    const formerr = await ask(Buffer.concat([header, Buffer.from([0xc0, 12])]));
    assert.ok(formerr);
    assert.equal(formerr.readUInt16BE(2) & 0x000f, 1, 'FORMERR for a pointer loop');
    assert.equal(await ask(Buffer.from([1, 2, 3])), undefined);
    assert.ok(dns.queries.includes('A mx1.example.test'));
  } finally {
    sock.close();
    await dns.close();
  }
});

test('decodeName: encode/decode round trip, and arbitrary bytes never crash it', () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-z0-9-]{1,20}$/), { maxLength: 6 }), (labels) => {
      const name = labels.join('.');
      assert.deepEqual(decodeName(encodeName(name), 0), { name, end: encodeName(name).length });
    }),
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(70), (bytes, offset) => {
      try {
        const { end } = decodeName(Buffer.from(bytes), offset);
        assert.ok(end <= bytes.length);
      } catch (err) {
        assert.ok(err instanceof Error);
      }
    }),
  );
});
