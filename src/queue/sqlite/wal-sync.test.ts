/**
 * @module queue/sqlite/wal-sync.test
 * The WAL barrier's grouping and failure rules, on a real file: concurrent barriers share
 * flushes, a barrier asked for during a flush gets a flush that starts after it, and a failed
 * flush fails every later barrier.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WalSync } from './wal-sync.js';

async function withFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'postwire-wal-'));
  const path = join(dir, 'index.sqlite-wal');
  await writeFile(path, 'frames');
  try {
    await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('100 barriers asked in one turn cost one flush', async () => {
  await withFile(async (path) => {
    const wal = new WalSync(path);
    await Promise.all(Array.from({ length: 100 }, () => wal.barrier()));
    assert.equal(wal.flushes, 1);
    await wal.close();
  });
});

test('barriers asked after a flush started share exactly one more flush', async () => {
  await withFile(async (path) => {
    const wal = new WalSync(path);
    const order: string[] = [];
    const first = wal.barrier().then(() => order.push('first'));
    // Asked after the first flush started (the end of the turn it was asked in; it may even have
    // finished): it cannot vouch for these, whichever it is.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    const later = Array.from({ length: 50 }, (_, i) => wal.barrier().then(() => order.push(`later${i}`)));
    await Promise.all([first, ...later]);
    assert.equal(wal.flushes, 2);
    assert.equal(order[0], 'first');
    await wal.close();
  });
});

test('a failed flush fails its waiters and every later barrier', async () => {
  const wal = new WalSync(join(tmpdir(), 'postwire-wal-missing', 'index.sqlite-wal'));
  await assert.rejects(wal.barrier(), /ENOENT/);
  await assert.rejects(wal.barrier(), /ENOENT/);
  await wal.close();
});

test('after close every barrier rejects', async () => {
  await withFile(async (path) => {
    const wal = new WalSync(path);
    await wal.barrier();
    await wal.close();
    await assert.rejects(wal.barrier(), /closed/);
  });
});
