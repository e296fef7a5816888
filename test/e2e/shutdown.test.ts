/**
 * Graceful shutdown of the real `postwire serve` process on SIGTERM: the listener closes, an
 * idle session gets 421 4.3.2 at once, a session in the middle of DATA may finish its message
 * (and gets its 250 only once the message is durable), then 421 4.3.2 at its next command; the
 * process exits 0 and the spool holds the finished message. With a short --shutdown-grace, a
 * session that stalls mid-DATA is cut off with 421 and its partial message is not queued.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawClient } from '../support/raw-client.js';
import { readAll, withoutTraceHeader } from '../support/server.js';
import { startServe } from '../support/process.js';
import type { ServeProcess } from '../support/process.js';
import { openSqliteStore } from '../../src/queue/sqlite/index.js';
import type { StoredMessage } from '../../src/queue/index.js';

async function storedMessages(spool: string): Promise<Array<StoredMessage & { body: Buffer }>> {
  const store = await openSqliteStore({ dir: spool });
  try {
    const out: Array<StoredMessage & { body: Buffer }> = [];
    for (const m of await store.listMessages({ limit: 1000 })) out.push({ ...m, body: await readAll(store.readBody(m.id)) });
    return out;
  } finally {
    await store.close();
  }
}

/** Greeting, EHLO, MAIL, RCPT, DATA: the client is left inside DATA after its 354. */
async function openData(port: number, rcpt: string): Promise<RawClient> {
  const c = await RawClient.connect(port);
  assert.equal((await c.reply()).code, 220);
  assert.equal((await c.command('EHLO client.test')).code, 250);
  assert.equal((await c.command('MAIL FROM:<app@client.test>')).code, 250);
  assert.equal((await c.command(`RCPT TO:<${rcpt}>`)).code, 250);
  assert.equal((await c.command('DATA')).code, 354);
  return c;
}

/** A connection attempt after the shutdown began: refused by the OS, or 421/closed by Postwire. */
async function newConnectionOutcome(port: number): Promise<string> {
  let c: RawClient;
  try {
    c = await RawClient.connect(port);
  } catch (err) {
    return `connect error ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  try {
    const r = await c.reply(5_000);
    return `reply ${r.code} ${r.text}`;
  } catch {
    return 'closed without a reply';
  } finally {
    c.close();
  }
}

async function withSpool(fn: (spool: string) => Promise<void>): Promise<void> {
  const spool = await mkdtemp(join(tmpdir(), 'postwire-shutdown-'));
  try {
    await fn(spool);
  } finally {
    await rm(spool, { recursive: true, force: true });
  }
}

/** Ends the child if an assertion left it running (a passing test has already seen it exit). */
async function reap(relay: ServeProcess | undefined): Promise<void> {
  if (relay && relay.child.exitCode === null && relay.child.signalCode === null) {
    relay.kill('SIGKILL');
    await relay.exited;
  }
}

describe('graceful shutdown on SIGTERM', () => {
  it('lets a message in DATA finish, 421s the idle and the new, exits 0 with the message queued', { timeout: 60_000 }, async () => {
    await withSpool(async (spool) => {
      let relay: ServeProcess | undefined;
      const clients: RawClient[] = [];
      try {
        relay = await startServe(['--spool', spool, '--shutdown-grace', '20s']);
        const inData = await openData(relay.port, 'finisher@dest.test');
        clients.push(inData);
        await inData.write('Subject: finishing during shutdown\r\n\r\nfirst half\r\n');

        const idle = await RawClient.connect(relay.port);
        clients.push(idle);
        assert.equal((await idle.reply()).code, 220);
        assert.equal((await idle.command('EHLO idle.test')).code, 250);

        relay.kill('SIGTERM');

        // The idle session is told at once, without sending anything.
        const bye = await idle.reply(5_000);
        assert.equal(bye.code, 421, bye.text);
        assert.match(bye.text, /^4\.3\.2 /);
        await idle.waitClosed(5_000);

        // The listener is closed: a newcomer is refused or told 421, never served.
        const newcomer = await newConnectionOutcome(relay.port);
        assert.match(newcomer, /^(connect error ECONNREFUSED|reply 421 4\.3\.2|closed without a reply)/, newcomer);
        assert.equal(relay.child.exitCode, null, 'still running while a message is in DATA');

        // The session in DATA finishes its message and gets its 250 …
        await inData.write('second half\r\n.\r\n');
        const queued = await inData.reply(10_000);
        assert.equal(queued.code, 250, queued.text);
        const id = /^2\.0\.0 Ok: queued as (\S+)$/.exec(queued.text)?.[1];
        assert.ok(id, `queued as <id>: ${queued.text}`);

        // … and 421 4.3.2 at its next command, then the connection closes.
        const after = await inData.command('MAIL FROM:<app@client.test>');
        assert.equal(after.code, 421, after.text);
        assert.match(after.text, /^4\.3\.2 /);
        await inData.waitClosed(5_000);

        assert.equal(await relay.exited, 0, `clean exit on SIGTERM:\n${relay.output()}`);

        const stored = await storedMessages(spool);
        assert.deepEqual(
          stored.map((m) => [m.id as string, m.recipients.map((r) => r.address)]),
          [[id, ['finisher@dest.test']]],
          'exactly the finished message is queued',
        );
        const body = withoutTraceHeader(stored[0]?.body ?? Buffer.alloc(0)).toString('latin1');
        assert.equal(body, 'Subject: finishing during shutdown\r\n\r\nfirst half\r\nsecond half\r\n');
      } finally {
        for (const c of clients) c.close();
        await reap(relay);
      }
    });
  });

  it('cuts off a client stalled mid-DATA with 421 after --shutdown-grace; its partial message is not queued', { timeout: 60_000 }, async () => {
    await withSpool(async (spool) => {
      let relay: ServeProcess | undefined;
      let c: RawClient | undefined;
      try {
        relay = await startServe(['--spool', spool, '--shutdown-grace', '500ms']);
        // One complete message first, so the spool read below is known to see what was queued.
        c = await openData(relay.port, 'complete@dest.test');
        const first = await c.command('Subject: complete\r\n\r\nwhole\r\n.');
        assert.equal(first.code, 250, first.text);
        const firstId = /queued as (\S+)/.exec(first.text)?.[1];
        assert.ok(firstId);

        assert.equal((await c.command('MAIL FROM:<app@client.test>')).code, 250);
        assert.equal((await c.command('RCPT TO:<stalled@dest.test>')).code, 250);
        assert.equal((await c.command('DATA')).code, 354);
        await c.write('Subject: never finished\r\n\r\npartial body\r\n');

        const signalled = Date.now();
        relay.kill('SIGTERM');
        const cut = await c.reply(10_000);
        const waited = Date.now() - signalled;
        assert.equal(cut.code, 421, cut.text);
        assert.match(cut.text, /^4\.3\.2 /);
        assert.ok(waited >= 400, `421 came after the grace period, not before (${waited} ms)`);
        assert.ok(waited < 8_000, `421 came soon after the grace period (${waited} ms)`);
        await c.waitClosed(5_000);

        assert.equal(await relay.exited, 0, `clean exit on SIGTERM:\n${relay.output()}`);

        const stored = await storedMessages(spool);
        assert.deepEqual(
          stored.map((m) => [m.id as string, m.recipients.map((r) => r.address)]),
          [[firstId, ['complete@dest.test']]],
          'the stalled message is not queued',
        );
      } finally {
        c?.close();
        await reap(relay);
      }
    });
  });
});
