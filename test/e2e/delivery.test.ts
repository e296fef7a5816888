/**
 * The delivering half end to end: a real Postwire (in-process, the same composition root as
 * `postwire serve`) relays to a scriptable sink on 127.0.0.1 port 0, through a smart host or
 * through MX records served by a fake DNS server. Magic recipients make the sink misbehave; the
 * assertions are on what the sink recorded and on the queue's states and history.
 * Invariants under test: whole (the sink gets exactly the stored bytes), once (one delivered
 * transaction per recipient), accounted (every recipient ends delivered or bounced with a DSN).
 */
import { describe, it } from 'node:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { RawClient } from '../support/raw-client.js';
import { readAll, startTestServer, startTestServerOn } from '../support/server.js';
import { submit } from '../support/submit.js';
import type { TestServer } from '../support/server.js';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import type { FakeSmtpServer, SinkTransaction } from '../fakes/fake-smtp-server.js';
import { startFakeDns } from '../fakes/fake-dns.js';
import { until } from '../support/wait.js';
import { FAST_DELIVERY, withRelay } from '../support/relay.js';

async function stored(server: TestServer, id: string): Promise<Buffer> {
  return readAll(server.store.readBody(id as never));
}

async function states(server: TestServer, id: string): Promise<string[]> {
  const m = await server.store.getMessage(id as never);
  return m?.recipients.map((r) => r.state) ?? [];
}

function deliveredTo(sink: FakeSmtpServer, rcpt: string): SinkTransaction[] {
  return sink.delivered.filter((t) => t.rcpts.includes(rcpt));
}

describe('delivery through a smart host', () => {
  it('delivers the stored bytes exactly, dot lines included', async () => {
    await withRelay([], {}, async (server, sink) => {
      const message = 'Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nplain\r\n. space\r\n';
      const id = await submit(server, 'a@source.test', ['ok-1@dest.test'], message);
      const t = await until('delivery', () => deliveredTo(sink, 'ok-1@dest.test')[0]);
      assert.ok(t.data.equals(await stored(server, id)), 'the sink holds exactly the stored message');
      await until('delivered state', async () => ((await states(server, id))[0] === 'delivered' ? true : undefined));
      assert.equal(deliveredTo(sink, 'ok-1@dest.test').length, 1);
    });
  });

  it('451 to RCPT once, then accepted: one delivery', async () => {
    await withRelay([], {}, async (server, sink) => {
      const id = await submit(server, 'a@source.test', ['tempfail-rcpt-once-1@dest.test'], 'Subject: t\r\n\r\nx\r\n');
      await until('delivered state', async () => ((await states(server, id))[0] === 'delivered' ? true : undefined));
      assert.equal(deliveredTo(sink, 'tempfail-rcpt-once-1@dest.test').length, 1);
      const history = await server.store.history(id as never);
      assert.equal(history[0]?.results[0]?.state, 'deferred');
      assert.match(history[0]?.results[0]?.reply ?? '', /^451 /);
    });
  });

  it('451 after end-of-data once: one delivery', async () => {
    await withRelay([], {}, async (server, sink) => {
      const id = await submit(server, 'a@source.test', ['tempfail-data-once-2@dest.test'], 'Subject: t\r\n\r\nx\r\n');
      await until('delivered state', async () => ((await states(server, id))[0] === 'delivered' ? true : undefined));
      assert.equal(deliveredTo(sink, 'tempfail-data-once-2@dest.test').length, 1);
    });
  });

  it('connection dropped mid-DATA once: one complete delivery, never marked delivered early', async () => {
    await withRelay([], {}, async (server, sink) => {
      const big = `Subject: big\r\n\r\n${'z'.repeat(200)}\r\n`.repeat(2000);
      const id = await submit(server, 'a@source.test', ['drop-in-data-once-3@dest.test'], big);
      await until('delivered state', async () => ((await states(server, id))[0] === 'delivered' ? true : undefined));
      const delivered = deliveredTo(sink, 'drop-in-data-once-3@dest.test');
      assert.equal(delivered.length, 1);
      assert.ok(delivered[0]?.data.equals(await stored(server, id)));
      const history = await server.store.history(id as never);
      assert.deepEqual(history.map((h) => h.results[0]?.state), ['deferred', 'delivered']);
    });
  });

  it('one of two recipients refused with 550: the other delivered once, one DSN with MAIL FROM:<>', async () => {
    await withRelay([], {}, async (server, sink) => {
      const id = await submit(server, 'sender@source.test', ['ok-4@dest.test', 'reject-4@dest.test'], 'Subject: two\r\n\r\nx\r\n');
      await until('final states', async () => ((await states(server, id)).join() === 'delivered,bounced' ? true : undefined));
      assert.equal(deliveredTo(sink, 'ok-4@dest.test').length, 1);
      const dsn = await until('the DSN at the sink', () => deliveredTo(sink, 'sender@source.test')[0]);
      assert.equal(dsn.mailFrom, '', 'the DSN is sent with a null reverse-path');
      const text = dsn.data.toString('utf8');
      assert.match(text, /Content-Type: multipart\/report; report-type=delivery-status/);
      assert.match(text, /Final-Recipient: rfc822;\s*reject-4@dest\.test/);
      assert.match(text, /550 5\.1\.1 <reject-4@dest\.test>: Recipient address rejected: User unknown/);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(deliveredTo(sink, 'sender@source.test').length, 1, 'exactly one DSN');
    });
  });

  it('a sink that always answers 451: the message expires after --max-age with the last reply quoted', async () => {
    const sink = await startFakeSmtp();
    const server = await startTestServer(['--delivery', 'on', '--retry', '200ms', '--max-age', '1500ms', '--smarthost', `127.0.0.1:${sink.port}`]);
    try {
      const id = await submit(server, 'sender@source.test', ['always-451-5@dest.test'], 'Subject: t\r\n\r\nx\r\n');
      await until('expired', async () => ((await states(server, id))[0] === 'expired' ? true : undefined));
      const dsn = await until('the DSN', () => deliveredTo(sink, 'sender@source.test')[0]);
      assert.equal(dsn.mailFrom, '');
      assert.match(dsn.data.toString(), /451 4\.3\.0 temporary failure after end-of-data/);
      assert.equal(deliveredTo(sink, 'always-451-5@dest.test').length, 0);
    } finally {
      await server.stop();
      await sink.close();
    }
  });

  it('a peer that answers 250 before our end-of-data: framing fault, held, at most one copy', async () => {
    await withRelay([], {}, async (server, sink) => {
      const id = await submit(server, 'a@source.test', ['early-250-6@dest.test'], `Subject: early\r\n\r\n${'line\r\n'.repeat(5000)}`);
      await until('held', async () => ((await states(server, id))[0] === 'held' ? true : undefined));
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(sink.transactions.filter((t) => t.rcpts.includes('early-250-6@dest.test')).length <= 1, 'never retried in a loop');
      assert.equal((await states(server, id))[0], 'held');
    });
  });

  it('BDAT to a CHUNKING peer and a 20 MiB message: exactly the stored bytes', async () => {
    await withRelay(['--max-message-size', '64MiB'], { extensions: ['PIPELINING', 'CHUNKING', '8BITMIME', 'SIZE 104857600'] }, async (server, sink) => {
      const line = '.dot-led line with some text to fill the message up 0123456789\r\n';
      const message = `Subject: big\r\n\r\n${line.repeat(Math.ceil((20 * 1024 * 1024) / line.length))}`;
      const id = await submit(server, 'a@source.test', ['big-7@dest.test'], message);
      const t = await until('delivery', () => deliveredTo(sink, 'big-7@dest.test')[0], 60_000);
      assert.equal(t.via, 'BDAT');
      assert.ok(t.data.equals(await stored(server, id)), 'byte-exact');
    });
  });
});

describe('operator control', () => {
  it('a held message is not tried; released, it is delivered at once', async () => {
    await withRelay(['--retry', '1h', '--max-age', '5d'], {}, async (server, sink) => {
      const id = await submit(server, 'a@source.test', ['tempfail-rcpt-once-10@dest.test'], 'Subject: hold\r\n\r\nx\r\n');
      await until('deferred', async () => ((await states(server, id))[0] === 'deferred' ? true : undefined)).catch(async (err: unknown) => {
        throw new Error(`${String(err)}; states ${JSON.stringify(await states(server, id))}; history ${JSON.stringify(await server.store.history(id as never))}`);
      });
      assert.deepEqual(await server.server.control.hold(id, 'checking with the customer'), { ok: true, changed: true });
      assert.deepEqual(await states(server, id), ['held']);
      assert.deepEqual(await server.server.control.hold('nonsense', 'x'), { ok: false, code: 'BAD_ID', message: '"nonsense" is not a queue id' });
      assert.deepEqual(await server.server.control.release(id), { ok: true, changed: true });
      await until('delivered right after release (not after the 1h retry)', async () => ((await states(server, id))[0] === 'delivered' ? true : undefined), 5_000);
      assert.equal(deliveredTo(sink, 'tempfail-rcpt-once-10@dest.test').length, 1);
      const notes = (await server.store.history(id as never)).map((h) => h.note ?? h.results[0]?.state);
      assert.deepEqual(notes, ['deferred', 'hold', 'release', 'delivered']);
    });
  });
});

describe('DSN rules', () => {
  it('a delay warning goes out once after --delay-warning; NOTIFY=NEVER gets no DSN', async () => {
    await withRelay(['--delay-warning', '400ms'], {}, async (server, sink) => {
      await submit(server, 'waiting@source.test', ['always-451-8@dest.test'], 'Subject: slow\r\n\r\nx\r\n');
      const warning = await until('the delay DSN', () => deliveredTo(sink, 'waiting@source.test')[0], 10_000);
      assert.equal(warning.mailFrom, '');
      assert.match(warning.data.toString(), /Action: delayed/);
      assert.match(warning.data.toString(), /Will-Retry-Until: /);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(deliveredTo(sink, 'waiting@source.test').length, 1, 'one delay warning per message');

      const c = await RawClient.connect(server.port);
      await c.reply();
      await c.command('EHLO source.test');
      await c.command('MAIL FROM:<quiet@source.test>');
      assert.equal((await c.command('RCPT TO:<reject-9@dest.test> NOTIFY=NEVER')).code, 250);
      await c.command('DATA');
      const r = await c.command('Subject: never\r\n\r\nx\r\n.');
      const id = /queued as (\S+)/.exec(r.text)?.[1] as string;
      c.close();
      await until('bounced', async () => ((await states(server, id))[0] === 'bounced' ? true : undefined));
      await new Promise((res) => setTimeout(res, 500));
      assert.equal(deliveredTo(sink, 'quiet@source.test').length, 0, 'NOTIFY=NEVER: no DSN');
    });
  });

  it('a DSN about a UTF-8 recipient reaches an ASCII sender through a peer without SMTPUTF8', async () => {
    await withRelay([], { extensions: ['PIPELINING', '8BITMIME', 'SIZE 104857600'] }, async (server, sink) => {
      const id = await submit(server, 'ascii@source.test', ['jörg@dëst.test'], 'Subject: utf8\r\n\r\nx\r\n', ' SMTPUTF8');
      await until('bounced (the peer cannot take SMTPUTF8)', async () => ((await states(server, id))[0] === 'bounced' ? true : undefined));
      const dsn = await until('the DSN', () => deliveredTo(sink, 'ascii@source.test')[0]);
      assert.equal(dsn.mailFrom, '');
      assert.ok(!dsn.commands.some((l) => /SMTPUTF8/i.test(l)), 'the DSN itself needs no SMTPUTF8');
      const head = dsn.data.toString('latin1').split('\r\n\r\n')[0] ?? '';
      assert.ok(/^[\x00-\x7f]*$/.test(head), 'the DSN header section is ASCII');
      assert.match(dsn.data.toString('latin1'), /Final-Recipient: utf-8;/);
      assert.match(dsn.data.toString('latin1'), /5\.6\.7/);
    });
  });
});

describe('routes from the config file', () => {
  it('sends each domain to its route, and a route\'s concurrency holds', async () => {
    const special = await startFakeSmtp();
    const rest = await startFakeSmtp({ slowMs: 150 });
    const dir = await mkdtemp(join(tmpdir(), 'postwire-routes-'));
    const config = join(dir, 'relay.json');
    await writeFile(config, JSON.stringify({
      routes: [
        { pattern: 'special.test', smarthost: `127.0.0.1:${special.port}` },
        { pattern: '*', smarthost: `127.0.0.1:${rest.port}`, concurrency: 1 },
      ],
    }));
    const server = await startTestServer([...FAST_DELIVERY, '--config', config]);
    try {
      const ids = await Promise.all([
        submit(server, 'a@source.test', ['x@special.test'], 'Subject: s\r\n\r\nx\r\n'),
        ...[1, 2, 3, 4].map((n) => submit(server, 'a@source.test', [`slow-${n}@other.test`], 'Subject: o\r\n\r\nx\r\n')),
      ]);
      for (const id of ids) await until('delivered', async () => ((await states(server, id))[0] === 'delivered' ? true : undefined));
      assert.deepEqual(special.delivered.flatMap((t) => t.rcpts), ['x@special.test']);
      assert.equal(rest.delivered.length, 4);
      assert.equal(rest.maxConcurrent, 1, 'the * route allows one connection at a time');
    } finally {
      await server.stop();
      await special.close();
      await rest.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('metrics', () => {
  it('GET /metrics counts accepted mail, outcomes by state, framing faults and the queue', async () => {
    await withRelay(['--admin', '127.0.0.1:0'], {}, async (server, sink) => {
      const admin = server.server.admin;
      assert.ok(admin, 'the admin listener is up');
      const two = await submit(server, 'sender@source.test', ['ok-11@dest.test', 'reject-11@dest.test'], 'Subject: m\r\n\r\nx\r\n');
      const early = await submit(server, 'a@source.test', ['early-250-12@dest.test'], `Subject: e\r\n\r\n${'line\r\n'.repeat(5000)}`);
      await until('final states', async () => ((await states(server, two)).join() === 'delivered,bounced' ? true : undefined));
      await until('held', async () => ((await states(server, early))[0] === 'held' ? true : undefined));
      await until('the DSN delivered', () => deliveredTo(sink, 'sender@source.test')[0]);
      // The sink has the DSN a moment before the relay records its delivery (and counts it).
      let text = '';
      const value = (series: string): number => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      await until('the DSN delivery recorded', async () => {
        const res = await fetch(`http://127.0.0.1:${admin.port}/metrics`);
        assert.equal(res.status, 200);
        text = await res.text();
        return value('postwire_recipients_total{state="delivered"}') >= 2 ? true : undefined;
      });
      assert.equal(value('postwire_messages_accepted_total'), 3, 'two submitted + one DSN');
      assert.equal(value('postwire_recipients_total{state="bounced"}'), 1);
      assert.equal(value('postwire_recipients_total{state="held"}'), 1);
      assert.ok(value('postwire_recipients_total{state="delivered"}') >= 2, 'the recipient and the DSN');
      assert.equal(value('postwire_framing_faults_total'), 1);
      assert.equal(value('postwire_queue_recipients{state="held"}'), 1);
      assert.ok(value('postwire_delivery_latency_seconds_count') >= 2);
      const missing = await fetch(`http://127.0.0.1:${admin.port}/api/v1/queue`);
      assert.equal(missing.status, 404);
      assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
    });
  });
});

describe('retention', () => {
  it('finished mail leaves the spool after --keep-done; mail still being retried stays', async () => {
    await withRelay(['--keep-done', '300ms'], {}, async (server, sink) => {
      const done = await submit(server, 'a@source.test', ['ok-13@dest.test'], 'Subject: done\r\n\r\nx\r\n');
      const pending = await submit(server, 'a@source.test', ['always-451-13@dest.test'], 'Subject: pending\r\n\r\nx\r\n');
      await until('delivered', () => deliveredTo(sink, 'ok-13@dest.test')[0]);
      await until('the finished message purged', async () => ((await server.store.getMessage(done)) === undefined ? true : undefined), 10_000);
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(await server.store.getMessage(pending), 'a message with a deferred recipient is kept');
    });
  });
});

describe('fairness', () => {
  it('a slow destination holds its own window, not the delivery slots other destinations need', async () => {
    const slow = await startFakeSmtp({ slowMs: 1500 });
    const fast = await startFakeSmtp();
    const dir = await mkdtemp(join(tmpdir(), 'postwire-fair-'));
    const config = join(dir, 'relay.json');
    await writeFile(config, JSON.stringify({
      routes: [
        { pattern: 'slow.test', smarthost: `127.0.0.1:${slow.port}`, concurrency: 1 },
        { pattern: '*', smarthost: `127.0.0.1:${fast.port}` },
      ],
    }));
    const server = await startTestServer([...FAST_DELIVERY, '--config', config, '--max-deliveries', '2']);
    try {
      for (let n = 0; n < 6; n++) await submit(server, 'a@source.test', [`slow-${n}@slow.test`], 'Subject: slow\r\n\r\nx\r\n');
      const started = Date.now();
      for (let n = 0; n < 3; n++) await submit(server, 'a@source.test', [`f${n}@fast.test`], 'Subject: fast\r\n\r\nx\r\n');
      await until('the fast destination delivered', () => (fast.delivered.length === 3 ? true : undefined), 20_000);
      const waited = Date.now() - started;
      assert.ok(slow.delivered.length < 6, 'the slow destination is still working through its queue');
      assert.ok(waited < 3_000, `fast mail waited ${waited} ms behind the slow destination`);
      assert.equal(slow.maxConcurrent, 1);
    } finally {
      await server.stop();
      await slow.close();
      await fast.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('fairness under a deep backlog', () => {
  it('a backlog for one slow destination larger than the claim budget does not hold up the others', async () => {
    const slow = await startFakeSmtp({ slowMs: 1000 });
    const fast = await startFakeSmtp();
    const dir = await mkdtemp(join(tmpdir(), 'postwire-backlog-'));
    const config = join(dir, 'relay.json');
    await writeFile(config, JSON.stringify({
      routes: [
        { pattern: 'slow.test', smarthost: `127.0.0.1:${slow.port}`, concurrency: 1 },
        { pattern: '*', smarthost: `127.0.0.1:${fast.port}` },
      ],
    }));
    // --max-deliveries 2: at most 20 claimed messages; 30 are queued for the slow destination.
    const server = await startTestServer(['--config', config, '--delivery', 'off']);
    try {
      for (let n = 0; n < 30; n++) await submit(server, 'a@source.test', [`slow-${n}@slow.test`], 'Subject: slow\r\n\r\nx\r\n');
      for (let n = 0; n < 3; n++) await submit(server, 'a@source.test', [`g${n}@fast.test`], 'Subject: fast\r\n\r\nx\r\n');
    } finally {
      await server.close();
    }
    // The same spool, now delivering: the whole backlog is due at once.
    const relay = await startTestServerOn(server.spool, [...FAST_DELIVERY, '--config', config, '--max-deliveries', '2']);
    try {
      const started = Date.now();
      await until('the fast destination delivered', () => (fast.delivered.length === 3 ? true : undefined), 20_000);
      const waited = Date.now() - started;
      assert.ok(waited < 4_000, `fast mail waited ${waited} ms behind a 30-message slow backlog`);
      assert.ok(slow.delivered.length < 10, 'the slow destination is still working through its backlog');
    } finally {
      await relay.stop();
      await slow.close();
      await fast.close();
      await rm(dir, { recursive: true, force: true });
      await rm(server.spool, { recursive: true, force: true });
    }
  });
});

describe('delivery by MX', () => {
  it('follows MX preference, skips a dead first MX, falls back to A, and bounces a null MX', async () => {
    const sink = await startFakeSmtp();
    const dns = await startFakeDns({
      'mx.test': { mx: [[10, 'dead.mx.test'], [20, 'live.mx.test']] },
      // 127.0.0.2 is loopback but nothing listens there on the sink's port: connection refused.
      'dead.mx.test': { a: ['127.0.0.2'] },
      'live.mx.test': { a: ['127.0.0.1'] },
      'a-only.test': { a: ['127.0.0.1'] },
      'nullmx.test': { mx: [[0, '.']] },
      'source.test': { a: ['127.0.0.1'] },
    });
    const server = await startTestServer([...FAST_DELIVERY, '--dns', `127.0.0.1:${dns.port}`, '--mx-port', String(sink.port)]);
    try {
      const id1 = await submit(server, 'sender@source.test', ['u@mx.test'], 'Subject: mx\r\n\r\nx\r\n');
      await until('delivered via the second MX', async () => ((await states(server, id1))[0] === 'delivered' ? true : undefined));
      const h1 = await server.store.history(id1 as never);
      assert.match(h1.at(-1)?.nextHop ?? '', /live\.mx\.test/);
      const id2 = await submit(server, 'sender@source.test', ['u@a-only.test'], 'Subject: a\r\n\r\nx\r\n');
      await until('delivered via A', async () => ((await states(server, id2))[0] === 'delivered' ? true : undefined));
      const id3 = await submit(server, 'sender@source.test', ['u@nullmx.test'], 'Subject: null\r\n\r\nx\r\n');
      await until('bounced at once', async () => ((await states(server, id3))[0] === 'bounced' ? true : undefined));
      const h3 = await server.store.history(id3 as never);
      assert.equal(h3.length, 1, 'no retry for a null MX');
      assert.match(h3[0]?.results[0]?.reply ?? '', /5\.1\.10/);
      const dsn = await until('the DSN for the null MX', () => deliveredTo(sink, 'sender@source.test')[0]);
      assert.match(dsn.data.toString(), /u@nullmx\.test/);
    } finally {
      await server.stop();
      await dns.close();
      await sink.close();
    }
  });
});
