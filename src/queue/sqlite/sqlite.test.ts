/**
 * @module queue/sqlite/sqlite.test
 * The SQLite backend against the shared conformance suite, then what only this backend promises:
 * group commit really groups, recovery cuts half-written tails and orphans but keeps (or reports)
 * committed messages, a failed flush fails its whole batch and nothing else, segments are
 * collected after purge, and a SIGKILLed writer loses nothing it had reported as committed.
 * Scheduling specifics: a spool written by migration 001 upgrades and its mail is due; open()
 * clears every lease (after close, and after a SIGKILL mid-run); the claim scans run on the
 * partial indexes; a window mark (markInWindow) left without a record becomes an ambiguous
 * recipient with a history entry at the next open, once, and only for a recipient still due.
 * Every store lives in a temp dir under os.tmpdir(), removed afterwards.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { patternBytes, readAll, runStoreConformance, sampleEnvelope, writeAndCommit } from '../conformance.js';
import { AMBIGUOUS_AT_RESTART, QueueError } from '../store.js';
import type { QueueStore } from '../store.js';
import type { QueueId } from '../ids.js';
import { newQueueId } from '../ids.js';
import { MIGRATIONS, openSqliteStore } from './index.js';
import { DUE_QUERIES } from './schedule-db.js';
import type { SqliteQueueStore, SqliteStoreOptions } from './index.js';

const KiB = 1024;

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'postwire-sqlite-'));
}

/** A store in a fresh temp dir; `reopen` closes the current one first. */
async function harness(extra: Omit<SqliteStoreOptions, 'dir'> = {}): Promise<{
  store: SqliteQueueStore;
  dir: string;
  reopen: () => Promise<SqliteQueueStore>;
  cleanup: () => Promise<void>;
}> {
  const dir = await tempDir();
  let current = await openSqliteStore({ dir, ...extra });
  return {
    store: current,
    dir,
    reopen: async () => {
      await current.close();
      current = await openSqliteStore({ dir, ...extra });
      return current;
    },
    cleanup: async () => {
      await current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

runStoreConformance('sqlite', () => harness());

async function ls(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

describe('sqlite store: group commit', () => {
  it('200 concurrent commits share far fewer than 200 flushes', async () => {
    const h = await harness();
    try {
      const before = h.store.stats.flushes;
      await Promise.all(Array.from({ length: 200 }, (_, i) => writeAndCommit(h.store, patternBytes(10 * KiB, i))));
      const flushes = h.store.stats.flushes - before;
      assert.ok(flushes < 50, `${flushes} flushes for 200 commits`);
      assert.equal(h.store.stats.commits, 200);
    } finally {
      await h.cleanup();
    }
  });

  it('a failed flush rejects its whole batch with QUEUE_IO and commits none of it', async () => {
    // segmentSize 1: every batch after the first rotates. The next segment's name is taken by a
    // symlink, so creating it fails: an I/O error in the middle of a flush.
    const h = await harness({ segmentSize: 1, inlineLimit: 4 * KiB });
    try {
      const first = await writeAndCommit(h.store, patternBytes(100));
      const [active] = await ls(join(h.dir, 'segments'));
      const next = String(Number(active?.slice(0, 8)) + 1).padStart(8, '0');
      await symlink('/dev/full', join(h.dir, 'segments', `${next}.seg`));
      const sizes = [10, 2000, 50 * KiB, 0];
      const writers = sizes.map(() => h.store.createMessage());
      // Bodies first, then all commits in one turn, so they form one batch.
      await Promise.all(writers.map((w, i) => w.write(patternBytes(sizes[i] ?? 0, i))));
      const results = await Promise.allSettled(writers.map((w) => w.commit(sampleEnvelope())));
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof QueueError && r.reason.code === 'QUEUE_IO', String(r.reason));
      }
      for (const w of writers) assert.equal(await h.store.getMessage(w.id), undefined);
      assert.deepEqual(await ls(join(h.dir, 'bodies')), [], 'the spilled body of the failed batch is gone');
      const later = await writeAndCommit(h.store, patternBytes(300, 9));
      assert.deepEqual((await h.store.listMessages()).map((m) => m.id), [first.id, later.id]);
      await unlink(join(h.dir, 'segments', `${next}.seg`));
      const again = await h.reopen();
      assert.deepEqual(again.recovery.corrupt, []);
      assert.deepEqual(Buffer.from(await readAll(again, later.id)), Buffer.from(patternBytes(300, 9)));
    } finally {
      await h.cleanup();
    }
  });
});

describe('sqlite store: recovery', () => {
  it('cuts a half-written segment tail and deletes orphan files, keeping committed messages', async () => {
    const h = await harness();
    try {
      const bodies = [patternBytes(5000, 1), patternBytes(200 * KiB, 2), patternBytes(7, 3)];
      const stored = [];
      for (const b of bodies) stored.push(await writeAndCommit(h.store, b));
      const segDir = join(h.dir, 'segments');
      const [segment] = await ls(segDir);
      assert.ok(segment);
      await h.store.close();
      // What a crash mid-flush leaves: bytes past the last committed record, a spill file of an
      // uncommitted message, a segment whose batch never reached SQLite.
      await appendFile(join(segDir, segment), patternBytes(3333, 4));
      await writeFile(join(h.dir, 'bodies', newQueueId(Date.now())), patternBytes(1000, 5));
      await writeFile(join(segDir, '00009999.seg'), patternBytes(10, 6));
      const again = await h.reopen();
      const r = again.recovery;
      assert.equal(r.truncatedBytes, 3333);
      assert.equal(r.truncatedSegments, 1);
      // The orphan body and the never-committed segment.
      assert.equal(r.discardedFiles, 2);
      assert.equal(r.keptMessages, 3);
      assert.deepEqual(r.corrupt, []);
      for (const [i, s] of stored.entries()) {
        assert.deepEqual(Buffer.from(await readAll(again, s.id)), Buffer.from(bodies[i] ?? []));
      }
      assert.deepEqual(await ls(join(h.dir, 'bodies')), [stored[1]?.id]);
      const segs = await ls(segDir);
      assert.ok(!segs.includes('00009999.seg'));
      assert.ok(segs.every((name) => name > '00009999.seg' || name === segment), `new segment numbers skip past 9999: ${segs.join(' ')}`);
    } finally {
      await h.cleanup();
    }
  });

  it('reports a missing or short body as QUEUE_CORRUPT without failing open', async () => {
    const h = await harness();
    try {
      const inline = await writeAndCommit(h.store, patternBytes(4000, 1));
      const spilled = await writeAndCommit(h.store, patternBytes(300 * KiB, 2));
      const fine = await writeAndCommit(h.store, patternBytes(300 * KiB, 3));
      const [segment] = await ls(join(h.dir, 'segments'));
      await h.store.close();
      await unlink(join(h.dir, 'bodies', spilled.id));
      await truncate(join(h.dir, 'segments', segment ?? 'missing'), 1000);
      const again = await h.reopen();
      const corrupt = again.recovery.corrupt.map((c) => c.id).sort();
      assert.deepEqual(corrupt, [inline.id, spilled.id].sort());
      assert.ok(again.recovery.corrupt.every((c) => c.code === 'QUEUE_CORRUPT' && c.reason.length > 0));
      assert.equal(again.recovery.keptMessages, 3, 'corrupt rows are kept for the operator, not dropped');
      for (const id of [inline.id, spilled.id]) {
        await assert.rejects(readAll(again, id), (err: unknown) => err instanceof QueueError && err.code === 'QUEUE_CORRUPT');
      }
      assert.deepEqual(Buffer.from(await readAll(again, fine.id)), Buffer.from(patternBytes(300 * KiB, 3)));
    } finally {
      await h.cleanup();
    }
  });

  it('refuses a second opener of the same spool while the first is open', async () => {
    const h = await harness();
    try {
      await writeAndCommit(h.store, patternBytes(10));
      await assert.rejects(openSqliteStore({ dir: h.dir }), (err: unknown) => err instanceof QueueError && err.code === 'QUEUE_IO');
      assert.equal((await h.store.listMessages()).length, 1);
    } finally {
      await h.cleanup();
    }
  });
});

describe('sqlite store: segment GC', () => {
  it('deletes a non-active segment once every message in it is purged', async () => {
    const h = await harness({ segmentSize: 16 * KiB });
    try {
      const segDir = join(h.dir, 'segments');
      const bySegment = new Map<string, QueueId[]>();
      for (let i = 0; i < 12; i++) {
        const before = await ls(segDir);
        const stored = await writeAndCommit(h.store, patternBytes(6 * KiB, i));
        const newest = (await ls(segDir)).at(-1) ?? '';
        bySegment.set(newest, [...(bySegment.get(newest) ?? []), stored.id]);
        assert.ok((await ls(segDir)).length >= before.length);
      }
      const names = [...bySegment.keys()].sort();
      assert.ok(names.length >= 3, `expected rotation, got ${names.join(' ')}`);
      const [oldest, second] = names;
      const active = names.at(-1) ?? '';
      for (const id of bySegment.get(oldest ?? '') ?? []) assert.equal(await h.store.purge(id), true);
      assert.ok(!(await ls(segDir)).includes(oldest ?? ''), 'the emptied segment is gone');
      assert.ok((await ls(segDir)).includes(second ?? ''), 'a segment with live messages stays');
      for (const id of bySegment.get(active) ?? []) assert.equal(await h.store.purge(id), true);
      assert.ok((await ls(segDir)).includes(active), 'the active segment is never deleted');
      const survivors = (bySegment.get(second ?? '') ?? []);
      const again = await h.reopen();
      assert.deepEqual(again.recovery.corrupt, []);
      for (const id of survivors) assert.ok(await again.getMessage(id));
      assert.ok(!(await ls(segDir)).includes(active), 'the emptied former active segment is reclaimed at open');
    } finally {
      await h.cleanup();
    }
  });

  it('reads bodies through the active handle and across a rotation, and leaves no descriptor open', async () => {
    const openFds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;
    const h = await harness({ segmentSize: 16 * KiB, inlineLimit: 64 * KiB });
    try {
      const fdsBefore = await openFds();
      const bodies = Array.from({ length: 6 }, (_, i) => patternBytes(5 * KiB + i, i));
      const stored = [];
      for (const b of bodies) stored.push(await writeAndCommit(h.store, b));
      // A reader holds an older segment open while later commits rotate past it.
      const first = stored[0];
      assert.ok(first);
      const reader = h.store.readBody(first.id)[Symbol.asyncIterator]();
      const head = await reader.next();
      for (let i = 0; i < 6; i++) await writeAndCommit(h.store, patternBytes(6 * KiB, 100 + i));
      const rest: Uint8Array[] = [];
      for (let r = await reader.next(); !r.done; r = await reader.next()) rest.push(r.value);
      assert.deepEqual(Buffer.concat([head.value as Uint8Array, ...rest]), Buffer.from(bodies[0] as Uint8Array));
      // Concurrent readers of every body, old segments and the active one alike.
      const all = await Promise.all(stored.map((m) => readAll(h.store, m.id)));
      all.forEach((got, i) => assert.deepEqual(Buffer.from(got), Buffer.from(bodies[i] as Uint8Array), `body ${i}`));
      assert.ok((await openFds()) <= fdsBefore + 1, 'only the new active segment may add a descriptor');
    } finally {
      await h.cleanup();
    }
  });

  it('deletes the spill file on purge', async () => {
    const h = await harness();
    try {
      const big = await writeAndCommit(h.store, patternBytes(200 * KiB));
      assert.equal((await stat(join(h.dir, 'bodies', big.id))).size, 200 * KiB);
      await h.store.purge(big.id);
      assert.deepEqual(await ls(join(h.dir, 'bodies')), []);
    } finally {
      await h.cleanup();
    }
  });
});

/** The crash child's body for an id: deterministic, so the parent can check it byte for byte. */
function crashBody(id: string): Buffer {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  const size = h % 3 === 0 ? 5000 + (h % 20000) : h % 3000;
  return Buffer.alloc(size, `${id}:${h}\n`);
}

const CRASH_CHILD = `
const { openSqliteStore } = await import(process.env.PW_MODULE);
const crashBody = ${crashBody.toString()};
const store = await openSqliteStore({ dir: process.env.PW_DIR, inlineLimit: 4096 });
const envelope = {
  sender: 'crash@example.org', recipients: [{ address: 'rcpt@example.net' }], body: '8BITMIME',
  smtputf8: false, client: { ip: '127.0.0.1', helo: 'crash', protocol: 'ESMTP' },
};
async function loop() {
  for (;;) {
    const w = store.createMessage();
    const body = crashBody(w.id);
    for (let at = 0; at < body.length; at += 1500) await w.write(body.subarray(at, at + 1500));
    await w.commit(envelope);
    process.stdout.write(w.id + '\\n');
  }
}
await Promise.all(Array.from({ length: 16 }, loop));
`;

describe('sqlite store: crash', () => {
  it('loses no message reported committed when the writer is SIGKILLed mid-stream', async (t) => {
    const dir = await tempDir();
    try {
      const printed = await runAndKill(dir, 1500);
      assert.ok(printed.length >= 1500);
      let store: QueueStore | undefined;
      try {
        const opened = await openSqliteStore({ dir });
        store = opened;
        const r = opened.recovery;
        t.diagnostic(`printed ${printed.length}, kept ${r.keptMessages}, truncated ${r.truncatedBytes} B, discarded ${r.discardedFiles} files`);
        assert.deepEqual(r.corrupt, [], 'recovery found no corruption');
        assert.ok(opened.recovery.keptMessages >= printed.length);
        for (const id of printed) {
          const got = await opened.getMessage(id);
          assert.ok(got, `committed ${id} is present`);
          const body = await readAll(opened, id);
          assert.ok(body.equals(crashBody(id)), `body of ${id} is byte-exact`);
        }
      } finally {
        await store?.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Run the crash child until it has printed `atLeast` ids, SIGKILL it, return the complete lines. */
function runAndKill(dir: string, atLeast: number): Promise<QueueId[]> {
  const modulePath = new URL('./index.js', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', CRASH_CHILD], {
    env: { ...process.env, PW_DIR: dir, PW_MODULE: modulePath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    let killed = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      if (!killed && out.split('\n').length > atLeast) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      err += text;
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (!killed || signal !== 'SIGKILL') {
        reject(new Error(`crash child ended on its own (${signal ?? 'exit'}): ${err}`));
        return;
      }
      // A line without its newline may have been cut by the kill: only whole lines were reported.
      const lines = out.split('\n');
      lines.pop();
      resolve(lines as QueueId[]);
    });
  });
}

describe('sqlite store: migrations', () => {
  it('upgrades a spool written at version 1: its queued mail is due at once', async () => {
    const dir = await tempDir();
    try {
      const receivedAt = Date.now() - 60_000;
      const ids = [newQueueId(receivedAt), newQueueId(receivedAt + 1), newQueueId(receivedAt + 2)];
      await writeVersion1Spool(dir, receivedAt, [
        { id: ids[0] as QueueId, states: ['queued', 'queued'] },
        { id: ids[1] as QueueId, states: ['delivered', 'bounced'] },
        { id: ids[2] as QueueId, states: ['held', 'deferred'] },
      ]);
      const store = await openSqliteStore({ dir });
      try {
        assert.deepEqual(store.recovery.corrupt, []);
        const [queued, finished, mixed] = await Promise.all(ids.map((id) => store.getMessage(id)));
        assert.equal(queued?.nextAttemptAt, receivedAt);
        assert.equal(queued?.attempts, 0);
        assert.equal(finished?.nextAttemptAt, undefined, 'nothing due: no next attempt');
        assert.equal(mixed?.nextAttemptAt, receivedAt + 2);
        assert.deepEqual(await store.history(ids[0] as QueueId), []);
        const claimed = await store.claimDue({ now: Date.now(), limit: 10, leaseMs: 1000, owner: 'upgrade' });
        assert.deepEqual(claimed.map((c) => c.message.id), [ids[0], ids[2]]);
        assert.deepEqual(Buffer.from(await readAll(store, ids[0] as QueueId)), Buffer.from('body 0'));
      } finally {
        await store.close();
      }
      const db = new Database(join(dir, 'index.sqlite'));
      try {
        assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
      } finally {
        db.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('plans the claim scans on the partial due indexes', async () => {
    const h = await harness();
    try {
      await writeAndCommit(h.store, patternBytes(10));
      await h.store.close();
      const db = new Database(join(h.dir, 'index.sqlite'), { readonly: true });
      try {
        for (const [kind, sql] of Object.entries(DUE_QUERIES)) {
          const plan = db.prepare<[{ now: number; limit: number }], { detail: string }>(`EXPLAIN QUERY PLAN ${sql}`)
            .all({ now: Date.now(), limit: 10 }).map((r) => r.detail).join('; ');
          assert.match(plan, new RegExp(`USING COVERING INDEX messages_due_${kind}`), `${kind}: ${plan}`);
          assert.doesNotMatch(plan, /TEMP B-TREE/, `${kind} needs no sort: ${plan}`);
        }
      } finally {
        db.close();
      }
    } finally {
      await h.cleanup();
    }
  });
});

/** A spool as migration 001 left it: schema version 1, one body file per message. */
async function writeVersion1Spool(
  dir: string,
  receivedAt: number,
  messages: ReadonlyArray<{ id: QueueId; states: readonly string[] }>,
): Promise<void> {
  const v1 = MIGRATIONS.find((m) => m.version === 1);
  assert.ok(v1);
  await mkdir(join(dir, 'bodies'), { recursive: true });
  await mkdir(join(dir, 'segments'), { recursive: true });
  const db = new Database(join(dir, 'index.sqlite'));
  try {
    db.exec(v1.sql);
    db.pragma('user_version = 1');
    const insertMessage = db.prepare(
      `INSERT INTO messages (id, received_at, sender, envelope, size, body_kind, segment, body_offset)
       VALUES (?, ?, ?, ?, ?, 'file', NULL, NULL)`,
    );
    const insertRecipient = db.prepare('INSERT INTO recipients (message_id, idx, address, notify, orcpt, state) VALUES (?, ?, ?, NULL, NULL, ?)');
    for (const [i, m] of messages.entries()) {
      const body = `body ${i}`;
      const envelope = sampleEnvelope({ recipients: m.states.map((_, r) => ({ address: `r${r}@example.net` })) });
      insertMessage.run(m.id, receivedAt + i, envelope.sender, JSON.stringify(envelope), body.length);
      m.states.forEach((state, r) => insertRecipient.run(m.id, r, `r${r}@example.net`, state));
      await writeFile(join(dir, 'bodies', m.id), body);
    }
  } finally {
    db.close();
  }
}

describe('sqlite store: the RFC 1047 window at open', () => {
  it('a mark left without a record becomes ambiguous, with a history entry, once', async () => {
    const h = await harness();
    try {
      const envelope = sampleEnvelope({ recipients: ['a', 'b', 'c', 'd'].map((l) => ({ address: `${l}@example.net` })) });
      const stored = await writeAndCommit(h.store, patternBytes(10), envelope);
      const clean = await writeAndCommit(h.store, patternBytes(10), envelope);
      const now = Date.now() + 1000;
      const claimed = await h.store.claimDue({ now, limit: 10, leaseMs: 3_600_000, owner: 'before' });
      const lease = claimed.find((c) => c.message.id === stored.id)?.lease;
      const cleanLease = claimed.find((c) => c.message.id === clean.id)?.lease;
      assert.ok(lease && cleanLease);
      // clean: marked, then recorded, as a run that finished does it.
      await h.store.markInWindow(cleanLease, [0, 1, 2, 3], now);
      await h.store.recordAttempt(cleanLease, { at: now, nextHop: 'mx', results: [0, 1, 2, 3].map((recipient) => ({ recipient, state: 'delivered', reply: '250 ok' })) });
      // stored: 2 is held by the operator meanwhile; 0, 1 and 2 enter the window; 3 never does.
      await h.store.markInWindow(lease, [0, 1, 2], now);
      await h.store.hold(stored.id, 'operator');
      await h.store.release(stored.id); // all four deferred now, lease still live
      await h.store.hold(stored.id, 'again'); // all four held: none due
      const heldHistory = await h.store.history(stored.id);
      // Not recorded: the process "dies" (close without recordAttempt).
      const again = await h.reopen();
      assert.deepEqual(again.recovery.ambiguous, [], 'held recipients are not due: marks cleared, states kept');
      assert.deepEqual(await again.history(stored.id), heldHistory);
      assert.equal(again.recovery.releasedLeases, 1);

      await again.release(stored.id);
      const [run] = await again.claimDue({ now: now + 10, limit: 10, leaseMs: 3_600_000, owner: 'second' });
      assert.equal(run?.message.id, stored.id);
      await again.markInWindow(run.lease, [1, 3], now + 10);
      const third = await h.reopen();
      assert.deepEqual(third.recovery.ambiguous, [{ id: stored.id, recipients: [1, 3] }]);
      assert.equal(third.recovery.releasedLeases, 1);
      const message = await third.getMessage(stored.id);
      assert.deepEqual(message?.recipients.map((r) => r.state), ['deferred', 'ambiguous', 'deferred', 'ambiguous']);
      assert.equal(message?.attempts, 0, 'not counted as an attempt');
      assert.equal(message?.lease, undefined);
      assert.ok(message?.nextAttemptAt !== undefined && message.nextAttemptAt <= now + 10, 'due again at once');
      const history = await third.history(stored.id);
      const last = history[history.length - 1];
      assert.deepEqual(
        { nextHop: last?.nextHop, note: last?.note, results: last?.results, nextAttemptAt: last?.nextAttemptAt },
        {
          nextHop: '',
          note: AMBIGUOUS_AT_RESTART.note,
          results: [1, 3].map((recipient) => ({ recipient, state: 'ambiguous', reply: AMBIGUOUS_AT_RESTART.reply })),
          nextAttemptAt: message?.nextAttemptAt,
        },
      );
      assert.deepEqual(await statesOf(third, clean.id), ['delivered', 'delivered', 'delivered', 'delivered']);
      assert.equal((await third.history(clean.id)).length, 1, 'recorded marks are cleared: no entry for clean');
      // The marks were cleared with the entry: the next restart finds nothing.
      const fourth = await h.reopen();
      assert.deepEqual(fourth.recovery.ambiguous, []);
      assert.equal((await fourth.history(stored.id)).length, history.length);
    } finally {
      await h.cleanup();
    }
  });
});

describe('sqlite store: just-committed bodies for their first read', () => {
  /** Overwrites every segment file with 'Z': a read that still returns the original came from memory. */
  async function scribbleSegments(dir: string): Promise<void> {
    for (const name of await ls(join(dir, 'segments'))) {
      const path = join(dir, 'segments', name);
      await writeFile(path, Buffer.alloc((await stat(path)).size, 'Z'));
    }
  }

  it('the first read comes from memory, once; later reads, spilled bodies and evicted ones from the spool', async () => {
    const h = await harness({ recentBodyBytes: 25 * KiB, inlineLimit: 64 * KiB });
    try {
      const bodies = Array.from({ length: 5 }, (_, i) => patternBytes(10 * KiB, i));
      const stored = [];
      for (const b of bodies) stored.push(await writeAndCommit(h.store, b));
      const spilled = await writeAndCommit(h.store, patternBytes(100 * KiB, 9));
      assert.ok(h.store.recentBytes <= 25 * KiB, `within the budget: ${h.store.recentBytes}`);
      assert.equal(h.store.recentBytes, 20 * KiB, 'the two newest segment bodies, not the spilled one');
      await scribbleSegments(h.dir);
      const zs = (n: number): Buffer => Buffer.alloc(n, 'Z');
      const first = await Promise.all(stored.map((m) => readAll(h.store, m.id)));
      // Oldest first out: the first three were dropped and are read from the (scribbled) spool.
      assert.deepEqual(first.map((b, i) => b.equals(i < 3 ? zs(10 * KiB) : Buffer.from(bodies[i] as Uint8Array))), [true, true, true, true, true]);
      assert.equal(h.store.recentBytes, 0, 'handed out once');
      const second = await readAll(h.store, stored[4]?.id as QueueId);
      assert.ok(second.equals(zs(10 * KiB)), 'a second read goes to the spool');
      assert.ok((await readAll(h.store, spilled.id)).equals(Buffer.from(patternBytes(100 * KiB, 9))));
    } finally {
      await h.cleanup();
    }
  });

  it('purge forgets a body that was never read', async () => {
    const h = await harness();
    try {
      const m = await writeAndCommit(h.store, patternBytes(10 * KiB));
      assert.equal(h.store.recentBytes, 10 * KiB);
      assert.equal(await h.store.purge(m.id), true);
      assert.equal(h.store.recentBytes, 0);
      await assert.rejects(readAll(h.store, m.id), (err: QueueError) => err.code === 'QUEUE_NOT_FOUND');
    } finally {
      await h.cleanup();
    }
  });
});

describe('sqlite store: one transaction per turn for the delivery path', () => {
  it("a turn's marks, records and releases share one commit; a failing one is rolled back alone", async () => {
    const h = await harness();
    try {
      const envelope = sampleEnvelope({ recipients: [{ address: 'a@example.net' }, { address: 'b@example.net' }] });
      const stored = [];
      for (let i = 0; i < 4; i++) stored.push(await writeAndCommit(h.store, patternBytes(10, i), envelope));
      const now = Date.now() + 1000;
      const claimed = await h.store.claimDue({ now, limit: 10, leaseMs: 3_600_000, owner: 'batch' });
      const leaseOf = (id: QueueId) => {
        const lease = claimed.find((c) => c.message.id === id)?.lease;
        assert.ok(lease, `claimed ${id}`);
        return lease;
      };
      const [a, b, c, d] = stored.map((m) => m.id) as [QueueId, QueueId, QueueId, QueueId];
      const before = h.store.scheduleTransactions;
      const delivered = [0, 1].map((recipient) => ({ recipient, state: 'delivered' as const, reply: '250 ok' }));
      const settled = await Promise.allSettled([
        h.store.markInWindow(leaseOf(a), [0, 1], now),
        // A stale token (as after a takeover): this one alone must fail.
        h.store.recordAttempt({ ...leaseOf(b), token: 'not-the-token' }, { at: now, nextHop: 'mx', results: delivered }),
        h.store.recordAttempt(leaseOf(c), { at: now, nextHop: 'mx', results: delivered }),
        // Out of range: rejected by the store, after the mark above has already run in the transaction.
        h.store.markInWindow(leaseOf(d), [0, 7], now),
        h.store.releaseLease(leaseOf(d)),
      ]);
      assert.equal(h.store.scheduleTransactions - before, 1, 'five calls of one turn, one transaction');
      assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
      assert.equal(((settled[1] as PromiseRejectedResult).reason as QueueError).code, 'QUEUE_LEASE_LOST');
      assert.equal(((settled[3] as PromiseRejectedResult).reason as QueueError).code, 'QUEUE_INVALID');
      // c's record committed; b's did not; d's bad mark left nothing behind (its savepoint rolled
      // back, recipient 0 included); a's mark is there (seen at the next open as ambiguous).
      assert.deepEqual(await statesOf(h.store, c), ['delivered', 'delivered']);
      assert.equal((await h.store.history(c)).length, 1);
      assert.deepEqual(await statesOf(h.store, b), ['queued', 'queued']);
      assert.equal((await h.store.history(b)).length, 0);
      assert.equal((await h.store.getMessage(d))?.lease, undefined, 'released');
      const again = await h.reopen();
      assert.deepEqual(again.recovery.ambiguous, [{ id: a, recipients: [0, 1] }]);
    } finally {
      await h.cleanup();
    }
  });
});

describe('sqlite store: leases at open', () => {
  it('open clears every lease: work in flight is due again at once, the old token is lost', async () => {
    const h = await harness();
    try {
      const stored = await writeAndCommit(h.store, patternBytes(10), sampleEnvelope());
      const now = Date.now() + 1000;
      const [claimed] = await h.store.claimDue({ now, limit: 1, leaseMs: 3_600_000, owner: 'before' });
      assert.ok(claimed);
      const again = await h.reopen();
      assert.equal(again.recovery.releasedLeases, 1);
      assert.equal((await again.getMessage(stored.id))?.lease, undefined);
      const [retaken] = await again.claimDue({ now, limit: 1, leaseMs: 1000, owner: 'after' });
      assert.equal(retaken?.message.id, stored.id);
      assert.equal(retaken?.attempts, 0);
      await assert.rejects(
        again.recordAttempt(claimed.lease, { at: now, nextHop: '', results: [{ recipient: 0, state: 'delivered', reply: '250 ok' }] }),
        (err: unknown) => err instanceof QueueError && err.code === 'QUEUE_LEASE_LOST',
      );
    } finally {
      await h.cleanup();
    }
  });

  it('a SIGKILL mid-run leaves nothing leased and nothing lost', async () => {
    const dir = await tempDir();
    try {
      const out = await runUntil(dir, CLAIM_CHILD, 'claimed');
      const ids = out.split('\n').filter((l) => l.startsWith('id ')).map((l) => l.slice(3) as QueueId);
      assert.equal(ids.length, 3);
      const store = await openSqliteStore({ dir });
      try {
        assert.equal(store.recovery.releasedLeases, 2, 'two claimed, one recorded');
        const claimed = await store.claimDue({ now: Date.now() + 1000, limit: 10, leaseMs: 1000, owner: 'restart' });
        assert.deepEqual(claimed.map((c) => c.message.id), [ids[1], ids[2]]);
        assert.deepEqual(await statesOf(store, ids[0] as QueueId), ['delivered']);
        assert.equal((await store.history(ids[0] as QueueId)).length, 1, 'the recorded attempt survived the kill');
      } finally {
        await store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function statesOf(store: QueueStore, id: QueueId): Promise<string[]> {
  return (await store.getMessage(id))?.recipients.map((r) => r.state) ?? [];
}

/** Commits three messages, claims them all, records the first as delivered, then waits to be killed. */
const CLAIM_CHILD = `
const { openSqliteStore } = await import(process.env.PW_MODULE);
const store = await openSqliteStore({ dir: process.env.PW_DIR });
const envelope = {
  sender: 'crash@example.org', recipients: [{ address: 'rcpt@example.net' }], body: '8BITMIME',
  smtputf8: false, client: { ip: '127.0.0.1', helo: 'crash', protocol: 'ESMTP' },
};
for (let i = 0; i < 3; i++) {
  const w = store.createMessage();
  await w.write(Buffer.from('body ' + i));
  await w.commit(envelope);
  process.stdout.write('id ' + w.id + '\\n');
}
const now = Date.now() + 1000;
const claimed = await store.claimDue({ now, limit: 10, leaseMs: 3600000, owner: 'doomed' });
await store.recordAttempt(claimed[0].lease, { at: now, nextHop: '', results: [{ recipient: 0, state: 'delivered', reply: '250 ok' }] });
process.stdout.write('claimed\\n');
setInterval(() => undefined, 1000);
`;

/** Run a child script until its stdout contains `marker`, SIGKILL it, return what it printed. */
function runUntil(dir: string, script: string, marker: string): Promise<string> {
  const modulePath = new URL('./index.js', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, PW_DIR: dir, PW_MODULE: modulePath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      if (out.includes(marker)) child.kill('SIGKILL');
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      err += text;
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && out.includes(marker)) resolve(out);
      else reject(new Error(`child ended without '${marker}' (${signal ?? 'exit'}): ${err}`));
    });
  });
}
