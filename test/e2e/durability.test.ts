/**
 * Invariant 2, "durable": the real `postwire serve` process takes mail from 50 concurrent
 * clients and is killed with SIGKILL mid-stream. Restarted on the same spool, every message that
 * got its 250 is in the queue, byte-exact, and nothing half-written is: each stored message is a
 * complete message that some client sent (a commit that beat the kill but whose 250 was lost
 * may be there too, whole; RFC 1047's window, seen from the server side).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawClient } from '../support/raw-client.js';
import { readAll, withoutTraceHeader } from '../support/server.js';
import { startServe } from '../support/process.js';
import { openSqliteStore } from '../../src/queue/sqlite/index.js';

const CLIENTS = 50;

function bodyFor(tag: string): Buffer {
  const seed = createHash('sha256').update(tag).digest('hex');
  const lines = [`Subject: ${tag}`, `X-Seed: ${seed}`, ''];
  for (let i = 0; i < 120; i++) lines.push(`${i % 7 === 0 ? '.' : ''}${seed}${seed.slice(0, (i * 7) % 64)}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n`);
}

function dotStuff(body: Buffer): Buffer {
  return Buffer.from(`${body.toString('latin1').replace(/(^|\r\n)\./g, '$1..')}.\r\n`, 'latin1');
}

it('loses nothing that got a 250 when killed with SIGKILL mid-stream', { timeout: 120_000 }, async () => {
  const spool = await mkdtemp(join(tmpdir(), 'postwire-kill-'));
  const acked = new Map<string, string>(); // queue id → tag
  const relay = await startServe(['--spool', spool]);
  let stop = false;
  const lanes = Array.from({ length: CLIENTS }, async (_, lane) => {
    const c = await RawClient.connect(relay.port);
    try {
      await c.reply();
      await c.command('EHLO crash.test');
      for (let seq = 0; !stop; seq++) {
        const tag = `lane${lane}-msg${seq}`;
        await c.write(`MAIL FROM:<crash@test.example>\r\nRCPT TO:<${tag}@dest.example>\r\nDATA\r\n`);
        await c.replies_(3);
        await c.write(dotStuff(bodyFor(tag)));
        const r = await c.reply();
        const id = /queued as (\S+)/.exec(r.text)?.[1];
        if (r.code === 250 && id) acked.set(id, tag);
      }
    } catch {
      // The kill cuts every connection; whatever was acknowledged before that is recorded.
    } finally {
      c.close();
    }
  });
  while (acked.size < 400) await new Promise((r) => setTimeout(r, 20));
  relay.kill('SIGKILL');
  stop = true;
  await Promise.all(lanes);
  await relay.exited;
  assert.ok(acked.size >= 400, `acknowledged ${acked.size}`);

  // Restart the real server on the crashed spool: it must recover and serve.
  const again = await startServe(['--spool', spool]);
  const c = await RawClient.connect(again.port);
  assert.equal((await c.reply()).code, 220);
  c.close();
  again.kill('SIGTERM');
  assert.equal(await again.exited, 0, 'clean exit on SIGTERM');

  const store = await openSqliteStore({ dir: spool });
  try {
    const stored = await store.listMessages({ limit: 10_000 });
    const byId = new Map(stored.map((m) => [m.id as string, m]));
    for (const [id, tag] of acked) {
      const m = byId.get(id);
      assert.ok(m, `acknowledged message ${id} (${tag}) is in the queue`);
    }
    for (const m of stored) {
      const tag = /^(lane\d+-msg\d+)@/.exec(m.recipients[0]?.address ?? '')?.[1];
      assert.ok(tag, `stored message ${m.id} has a known recipient`);
      const body = withoutTraceHeader(await readAll(store.readBody(m.id)));
      assert.ok(body.equals(bodyFor(tag)), `stored message ${m.id} (${tag}) is whole and exact`);
    }
    assert.ok(stored.length >= acked.size);
  } finally {
    await store.close();
    await rm(spool, { recursive: true, force: true });
  }
});
