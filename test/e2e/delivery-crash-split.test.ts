/**
 * Once, across destinations: a message for two destinations, one fast and one slow. The fast
 * peer's 250 arrives while the slow transaction is still running, and the relay is SIGKILLed
 * then. The fast recipient was settled as delivered when its reply came, so after the restart it
 * is neither delivered again nor reported ambiguous; only the slow one, still in the window, is.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawClient } from '../support/raw-client.js';
import { startServe } from '../support/process.js';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import { openSqliteStore } from '../../src/queue/sqlite/index.js';
import { until } from '../support/wait.js';

it('a recipient delivered before a SIGKILL is not delivered again while a sibling destination was still running', { timeout: 60_000 }, async () => {
  const fast = await startFakeSmtp();
  const slow = await startFakeSmtp({ slowMs: 2_000 });
  const dir = await mkdtemp(join(tmpdir(), 'postwire-split-'));
  const spool = join(dir, 'spool');
  const config = join(dir, 'relay.json');
  await writeFile(config, JSON.stringify({
    routes: [
      { pattern: 'fast.test', smarthost: `127.0.0.1:${fast.port}` },
      { pattern: 'slow.test', smarthost: `127.0.0.1:${slow.port}` },
    ],
  }));
  const flags = ['--spool', spool, '--delivery', 'on', '--config', config, '--retry', '200ms'];
  try {
    const relay = await startServe(flags);
    const c = await RawClient.connect(relay.port);
    await c.reply();
    await c.command('EHLO split.test');
    await c.command('MAIL FROM:<s@source.test>');
    assert.equal((await c.command('RCPT TO:<a@fast.test>')).code, 250);
    assert.equal((await c.command('RCPT TO:<slow-b@slow.test>')).code, 250);
    await c.command('DATA');
    assert.equal((await c.command('Subject: split\r\n\r\nx\r\n.')).code, 250);
    c.close();
    await until('the fast peer has it', () => fast.delivered.length === 1);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(slow.delivered.length, 0, 'the slow transaction is still waiting for its reply');
    relay.kill('SIGKILL');
    await relay.exited;

    const again = await startServe(flags);
    await until('the slow recipient delivered after the restart', () => slow.delivered.length >= 1, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(fast.delivered.filter((t) => t.rcpts.includes('a@fast.test')).length, 1, 'the fast recipient is delivered once');
    again.kill('SIGTERM');
    assert.equal(await again.exited, 0);

    const store = await openSqliteStore({ dir: spool });
    try {
      const [message] = await store.listMessages({ limit: 10 });
      assert.ok(message);
      assert.equal(message.recipients[0]?.state, 'delivered');
      const history = await store.history(message.id);
      const ambiguousAtRestart = history.filter((h) => h.note === 'ambiguous-at-restart').flatMap((h) => h.results.map((r) => r.recipient));
      assert.deepEqual(ambiguousAtRestart, [1], 'only the slow recipient, still in the window, was ambiguous');
    } finally {
      await store.close();
    }
  } finally {
    await fast.close();
    await slow.close();
    await rm(dir, { recursive: true, force: true });
  }
});
