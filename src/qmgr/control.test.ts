/**
 * qmgr/control against a real embedded store: the bounce order (the DSN is queued before the
 * recipients are marked, so a DSN that cannot be queued leaves the message as it was), nothing
 * bounces a bounce, and preview agrees with what the actions do.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, MessageIntake } from '../cleanup/index.js';
import { silentLogger } from '../obs/index.js';
import { patternBytes, sampleEnvelope, writeAndCommit } from '../queue/conformance.js';
import { openSqliteStore } from '../queue/sqlite/index.js';
import type { QueueStore } from '../queue/index.js';
import { systemClock } from '../util/index.js';
import { createQueueControl, preview } from './control.js';

function intake(commit: () => Promise<string>, opened: string[]): MessageIntake {
  const message = (): IncomingMessage => ({ id: 'x', size: 0, write: async () => undefined, commit, abort: async () => undefined });
  return {
    open: () => message(),
    openGenerated: (m) => {
      opened.push(m.recipient);
      return message();
    },
  };
}

async function withStore(run: (store: QueueStore) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'postwire-control-'));
  const store = await openSqliteStore({ dir });
  try {
    await run(store);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const deps = (store: QueueStore, i: MessageIntake) => ({ store, wake: () => undefined, intake: i, hostname: 'mx.test', clock: systemClock, random: () => 0.5, log: silentLogger });

test('bounce: a DSN that cannot be queued leaves the message untouched', async () => {
  await withStore(async (store) => {
    const m = await writeAndCommit(store, patternBytes(10));
    const opened: string[] = [];
    const control = createQueueControl(deps(store, intake(() => Promise.reject(new Error('disk full')), opened)));
    await assert.rejects(control.bounce(m.id, 'closed'), /disk full/);
    assert.deepEqual(opened, ['alice@example.org']);
    assert.deepEqual((await store.getMessage(m.id))?.recipients.map((r) => r.state), ['queued']);
    assert.deepEqual(await store.history(m.id), []);
  });
});

test('bounce: queued DSN first, then bounced; a null-sender message is bounced with no DSN', async () => {
  await withStore(async (store) => {
    const opened: string[] = [];
    const control = createQueueControl(deps(store, intake(async () => '01DSNDSNDSNDSNDSN0', opened)));
    const m = await writeAndCommit(store, patternBytes(10));
    assert.deepEqual(preview('bounce', m, Date.now()), { changed: true });
    const r = await control.bounce(m.id, 'closed');
    assert.deepEqual(r, { ok: true, changed: true, detail: '1 recipient(s) bounced; DSN 01DSNDSNDSNDSNDSN0 queued to alice@example.org' });
    const after = await store.getMessage(m.id);
    assert.deepEqual(after?.recipients.map((x) => x.state), ['bounced']);
    assert.deepEqual(preview('bounce', after ?? m, Date.now()), { changed: false, detail: 'every recipient is already final' });
    const bounce = await writeAndCommit(store, patternBytes(10), sampleEnvelope({ sender: '' }));
    const rb = await control.bounce(bounce.id, 'no');
    assert.equal(rb.ok && rb.detail, '1 recipient(s) bounced; no DSN: the message has the null sender (nothing bounces a bounce)');
    assert.deepEqual(opened, ['alice@example.org'], 'no DSN opened for the bounce');
    assert.deepEqual(await control.bounce('nonsense', 'x'), { ok: false, code: 'BAD_ID', message: '"nonsense" is not a queue id' });
  });
});

test('preview agrees with hold, release, retry and delete', async () => {
  await withStore(async (store) => {
    const control = createQueueControl(deps(store, intake(async () => 'x', [])));
    const m = await writeAndCommit(store, patternBytes(10));
    const now = (): number => Date.now();
    const check = async (action: 'hold' | 'release' | 'retry' | 'delete', run: () => ReturnType<typeof control.hold>): Promise<void> => {
      const before = await store.getMessage(m.id);
      assert.ok(before);
      const expected = preview(action, before, now());
      const got = await run();
      assert.ok(got.ok);
      assert.equal(got.changed, expected.changed, action);
    };
    await check('release', () => control.release(m.id));
    await check('retry', () => control.retry(m.id));
    await check('hold', () => control.hold(m.id, ''));
    assert.deepEqual((await store.history(m.id))[0]?.results[0]?.reply, 'held by operator', 'an empty reason gets the default');
    await check('hold', () => control.hold(m.id, 'again'));
    await check('release', () => control.release(m.id));
    await check('retry', () => control.retry(m.id));
    await check('delete', () => control.delete(m.id, ''));
    await check('delete', () => control.delete(m.id, ''));
  });
});
