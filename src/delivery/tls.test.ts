/**
 * Outbound TLS end to end over loopback, with real TLS: the delivery agent against the fake sink
 * extended with STARTTLS and AUTH (test/fakes/fake-smtp-server.ts) and certificates from a
 * throwaway CA (test/support/test-ca.ts). Each policy is checked by what reached the sink, line by
 * line: `may` delivers over TLS and falls back to plain text once after a failed handshake;
 * `encrypt` refuses a peer without STARTTLS (or refusing it, or failing the handshake) and never
 * sends MAIL; `verify` refuses a wrong name and an untrusted chain (deferred 4.7.5, reason in the
 * reply); REQUIRETLS bounces 5.7.30 when the hop cannot honour it and sends MAIL … REQUIRETLS
 * when it can; client AUTH happens only inside TLS (never a credential in plain text), and a 535
 * is deferred.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { silentLogger } from '../obs/index.js';
import { systemClock } from '../util/index.js';
import { startFakeSmtp, type FakeSmtpOptions, type FakeSmtpServer } from '../../test/fakes/fake-smtp-server.js';
import { createTestCa, type TestCa, type TestLeaf } from '../../test/support/test-ca.js';
import { dotHeavyBody, makeJob, makeRoute, smallBody } from '../../test/support/delivery.js';
import { createDeliveryAgent, type DeliveryAgent, type DeliveryAgentOptions, type DeliveryReport } from './agent.js';
import type { RouteSuccess } from './route.js';
import type { TlsPolicy } from './tls-policy.js';

let ca: TestCa;
let otherCa: TestCa;
let leaf: TestLeaf;
let untrusted: TestLeaf;
const dir = mkdtempSync(join(tmpdir(), 'postwire-tls-out-'));

before(async () => {
  ca = await createTestCa();
  otherCa = await createTestCa('Someone Else CA');
  leaf = await ca.issue(['mx1.test', '127.0.0.1']);
  untrusted = await otherCa.issue(['mx1.test']);
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(
  sinkOptions: FakeSmtpOptions,
  agentOptions: Partial<DeliveryAgentOptions>,
  fn: (sink: FakeSmtpServer, agent: DeliveryAgent) => Promise<void>,
): Promise<void> {
  const sink = await startFakeSmtp(sinkOptions);
  const agent = createDeliveryAgent({ hostname: 'relay.test', clock: systemClock, log: silentLogger, tlsCa: ca.ca, ...agentOptions });
  try {
    await fn(sink, agent);
  } finally {
    await agent.close();
    await sink.close();
  }
}

/** The MX route of makeRoute (host `mx1.test` at 127.0.0.1) with a route-level `tls`. */
function routeWith(port: number, tls?: TlsPolicy, extra: Partial<RouteSuccess['route']> = {}): RouteSuccess {
  const r = makeRoute(port);
  return { ...r, route: { ...r.route, ...(tls !== undefined ? { tls } : {}), ...extra } };
}

function smarthost(port: number, extra: Partial<RouteSuccess['route']>): RouteSuccess {
  return {
    ok: true,
    destination: `smarthost:127.0.0.1:${port}`,
    hosts: [{ name: '127.0.0.1', address: '127.0.0.1', port, preference: 0 }],
    route: { pattern: '*', nextHop: { kind: 'smarthost', host: '127.0.0.1', port }, origin: 0, ...extra },
    explain: [],
  };
}

const only = (r: DeliveryReport): { kind: string; reply: string; enhanced?: string; scope: string } => {
  const o = r.outcomes[0];
  assert.ok(o);
  return o;
};
const mailSent = (sink: FakeSmtpServer): boolean => sink.lines.some((l) => /^MAIL /i.test(l.line));

describe('delivery: outbound STARTTLS and the TLS policies', () => {
  it('may (the default): STARTTLS when offered, EHLO again, a 1 MiB dot-heavy body byte-exact inside TLS; the note says so', async () => {
    const body = dotHeavyBody(1024 * 1024);
    await run({ tls: leaf }, { tlsCa: otherCa.ca }, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port), makeJob(body, ['bob@dst.test']));
      assert.equal(only(r).kind, 'delivered');
      assert.equal(sink.delivered.length, 1);
      assert.match(sink.delivered[0]?.tls ?? '', /^TLSv1\.[23]$/);
      assert.ok(sink.delivered[0]?.data.equals(body), 'byte-exact over TLS');
      assert.deepEqual(sink.lines.filter((l) => !l.tls).map((l) => l.line.split(' ')[0]), ['EHLO', 'STARTTLS'], 'nothing but EHLO and STARTTLS in plain text');
      assert.equal(sink.lines.filter((l) => l.tls && l.line.startsWith('EHLO')).length, 1, 'EHLO again after the handshake');
      assert.match(r.note ?? '', /mx1\.test\[127\.0\.0\.1\]:\d+: TLS TLSv1\.[23] \S+, certificate not verified \(certificate not trusted/);
    });
  });

  it('none: never STARTTLS, even when offered', async () => {
    await run({ tls: leaf }, { tlsPolicy: 'none' }, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(only(r).kind, 'delivered');
      assert.equal(sink.delivered[0]?.tls, undefined);
      assert.ok(!sink.lines.some((l) => l.line === 'STARTTLS'));
    });
  });

  it('verify with the right name and a trusted chain: delivered, "certificate verified"', async () => {
    await run({ tls: leaf }, {}, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port, 'verify'), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(only(r).kind, 'delivered', only(r).reply);
      assert.ok(sink.delivered[0]?.tls);
      assert.match(r.note ?? '', /certificate verified/);
    });
  });

  it('verify refuses a certificate for another name: deferred 4.7.5 with the reason, no MAIL, never plain text', async () => {
    const wrong = await ca.issue(['other.example.test']);
    await run({ tls: wrong }, {}, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port, 'verify'), makeJob(smallBody(), ['bob@dst.test']));
      const o = only(r);
      assert.equal(o.kind, 'deferred');
      assert.equal(o.enhanced, '4.7.5');
      assert.equal(o.scope, 'destination');
      assert.match(o.reply, /^451 4\.7\.5 TLS required by policy verify \(route '\*'\): certificate name mismatch: .*mx1\.test/);
      assert.equal(sink.transactions.length, 0);
      assert.ok(!mailSent(sink), 'no MAIL, in TLS or not');
      assert.equal(sink.sessions, 1, 'no plain-text retry');
    });
  });

  it('verify refuses a chain the trust store does not know (a global --tls-policy verify)', async () => {
    await run({ tls: untrusted }, { tlsPolicy: 'verify' }, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(only(r).kind, 'deferred');
      assert.match(only(r).reply, /TLS required by policy verify \(default\): certificate not trusted/);
      assert.ok(!mailSent(sink));
    });
  });

  it('encrypt refuses a peer without STARTTLS: deferred 4.7.4, nothing but EHLO (and QUIT) sent', async () => {
    await run({}, {}, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port, 'encrypt'), makeJob(smallBody(), ['bob@dst.test']));
      const o = only(r);
      assert.equal(o.kind, 'deferred');
      assert.equal(o.enhanced, '4.7.4');
      assert.match(o.reply, /TLS required by policy encrypt \(route '\*'\): mx1\.test\[127\.0\.0\.1\]:\d+ does not offer STARTTLS/);
      assert.deepEqual(sink.lines.map((l) => l.line.split(' ')[0]).filter((v) => v !== 'QUIT'), ['EHLO']);
    });
  });

  it('encrypt refuses a peer that answers STARTTLS with 454, and one whose handshake fails; may falls back to plain text once', async () => {
    await run({ tls: leaf, starttlsReply: '454 4.7.0 TLS not available due to temporary reason' }, {}, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port, 'encrypt'), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(only(r).kind, 'deferred');
      assert.match(only(r).reply, /refused STARTTLS \(454 4\.7\.0 TLS not available/);
      assert.ok(!mailSent(sink));
    });
    // A certificate the server cannot use with our minimum version is awkward to make; a peer
    // that says 220 and then speaks garbage fails the handshake just as well.
    const broken = await brokenTlsPeer();
    try {
      const agent = createDeliveryAgent({ hostname: 'relay.test', clock: systemClock, log: silentLogger });
      try {
        const refused = await agent.deliver(routeWith(broken.port, 'encrypt'), makeJob(smallBody(), ['bob@dst.test']));
        assert.equal(only(refused).kind, 'deferred');
        assert.equal(only(refused).enhanced, '4.7.5');
        assert.match(only(refused).reply, /TLS required by policy encrypt .*TLS handshake with .* failed/);
        assert.equal(broken.sessions(), 1, 'encrypt: no plain-text retry');
        assert.equal(broken.mails(), 0);
        const fallback = await agent.deliver(routeWith(broken.port, 'may'), makeJob(smallBody(), ['bob@dst.test']));
        assert.equal(only(fallback).kind, 'delivered', only(fallback).reply);
        assert.equal(broken.sessions(), 3, 'may: one more session, in plain text');
        assert.equal(broken.mails(), 1);
        assert.match(fallback.note ?? '', /TLS handshake with .* failed.*; retried in plain text \(policy may\)/);
      } finally {
        await agent.close();
      }
    } finally {
      await broken.close();
    }
  });
});

describe('delivery: REQUIRETLS (RFC 8689)', () => {
  it('a verified peer announcing REQUIRETLS gets MAIL FROM … REQUIRETLS', async () => {
    await run({ tls: leaf, extensions: ['PIPELINING', '8BITMIME', 'REQUIRETLS'] }, { tlsPolicy: 'may' }, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port), makeJob(smallBody(), ['bob@dst.test'], { requireTls: true }));
      assert.equal(only(r).kind, 'delivered', only(r).reply);
      assert.match(sink.delivered[0]?.commands[0] ?? '', /^MAIL FROM:<alice@src\.test> .*REQUIRETLS$/);
      assert.ok(sink.delivered[0]?.tls);
    });
  });

  it('bounces 5.7.30 when the peer does not announce REQUIRETLS, or has no STARTTLS; defers when the certificate fails', async () => {
    await run({ tls: leaf }, {}, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port), makeJob(smallBody(), ['bob@dst.test'], { requireTls: true }));
      assert.equal(only(r).kind, 'bounced');
      assert.equal(only(r).enhanced, '5.7.30');
      assert.match(only(r).reply, /^550 5\.7\.30 .*REQUIRETLS.*the peer does not offer REQUIRETLS/);
      assert.ok(!mailSent(sink));
    });
    await run({ extensions: ['PIPELINING', 'REQUIRETLS'] }, {}, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port), makeJob(smallBody(), ['bob@dst.test'], { requireTls: true }));
      assert.equal(only(r).kind, 'bounced');
      assert.match(only(r).reply, /^550 5\.7\.30 TLS required by REQUIRETLS .*does not offer STARTTLS/);
      assert.ok(!mailSent(sink));
    });
    await run({ tls: untrusted, extensions: ['PIPELINING', 'REQUIRETLS'] }, {}, async (sink, agent) => {
      const r = await agent.deliver(routeWith(sink.port), makeJob(smallBody(), ['bob@dst.test'], { requireTls: true }));
      assert.equal(only(r).kind, 'deferred');
      assert.match(only(r).reply, /TLS required by REQUIRETLS .*certificate not trusted/);
      assert.ok(!mailSent(sink));
    });
  });
});

describe('delivery: client AUTH to a smart host', () => {
  const password = 'correct horse battery staple';
  const secret = join(dir, 'relay.password');
  writeFileSync(secret, `${password}\n`);
  const auth = { user: 'relay@src.test', passwordFile: secret };

  it('AUTH PLAIN inside STARTTLS, then the message; the credentials never travel in plain text', async () => {
    await run({ tls: leaf, auth: { user: auth.user, password }, requireAuth: true, authBeforeTls: true }, {}, async (sink, agent) => {
      const r = await agent.deliver(smarthost(sink.port, { tls: 'verify', auth }), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(only(r).kind, 'delivered', only(r).reply);
      assert.equal(sink.delivered[0]?.authUser, auth.user);
      const authLines = sink.lines.filter((l) => l.line.startsWith('AUTH'));
      assert.equal(authLines.length, 1);
      assert.ok(authLines.every((l) => l.tls), 'AUTH only inside TLS');
      assert.match(r.note ?? '', /AUTH PLAIN as relay@src\.test/);
      assert.ok(!(r.note ?? '').includes(password), 'the password is in no note');
    });
  });

  it('refuses to AUTH without TLS even under may and with AUTH offered in plain text: deferred, no AUTH line, no MAIL', async () => {
    await run({ auth: { user: auth.user, password }, authBeforeTls: true, requireAuth: true }, {}, async (sink, agent) => {
      const r = await agent.deliver(smarthost(sink.port, { tls: 'may', auth }), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(only(r).kind, 'deferred');
      assert.match(only(r).reply, /AUTH as relay@src\.test is configured for this route and credentials are sent only over TLS/);
      assert.ok(!sink.lines.some((l) => l.line.startsWith('AUTH')), 'no AUTH command at all');
      assert.ok(!sink.lines.some((l) => l.line.includes(Buffer.from(password).toString('base64').slice(0, 12))));
      assert.ok(!mailSent(sink));
    });
  });

  it('a 535 defers (as Postfix smtp_sasl_auth_soft_bounce), 4.7.8, so a corrected password lets the queue drain', async () => {
    await run({ tls: leaf, auth: { user: auth.user, password: 'another password' }, requireAuth: true }, {}, async (sink, agent) => {
      const r = await agent.deliver(smarthost(sink.port, { tls: 'encrypt', auth }), makeJob(smallBody(), ['bob@dst.test']));
      assert.equal(only(r).kind, 'deferred');
      assert.equal(only(r).enhanced, '4.7.8');
      assert.match(only(r).reply, /^535 5\.7\.8 Authentication credentials invalid/);
      assert.ok(!mailSent(sink));
    });
  });
});

/** Answers EHLO with STARTTLS, 220 to STARTTLS then garbage; plain sessions get a normal dialogue. */
async function brokenTlsPeer(): Promise<{ port: number; sessions(): number; mails(): number; close(): Promise<void> }> {
  let sessions = 0;
  let mails = 0;
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sessions++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write('220 broken.test ESMTP\r\n');
    let buf = '';
    let inData = false;
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let eol = buf.indexOf('\r\n'); eol >= 0; eol = buf.indexOf('\r\n')) {
        const line = buf.slice(0, eol);
        buf = buf.slice(eol + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            s.write('250 2.0.0 queued\r\n');
          }
          continue;
        }
        const verb = line.split(' ')[0]?.toUpperCase();
        if (verb === 'EHLO') s.write('250-broken.test\r\n250 STARTTLS\r\n');
        else if (verb === 'STARTTLS') {
          s.write('220 go ahead\r\n');
          setTimeout(() => s.end('this is not a TLS server hello\r\n'), 20);
          return;
        } else if (verb === 'MAIL') {
          mails++;
          s.write('250 ok\r\n');
        } else if (verb === 'RCPT') s.write('250 ok\r\n');
        else if (verb === 'DATA') {
          inData = true;
          s.write('354 go\r\n');
        } else if (verb === 'QUIT') s.end('221 bye\r\n');
        else s.write('250 ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    sessions: () => sessions,
    mails: () => mails,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
