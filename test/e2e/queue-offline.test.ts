/**
 * `postwire queue` and `postwire explain` offline: the real binary against a real spool that a
 * real Postwire filled and then stopped (`--spool DIR`, no server). Every command, every filter,
 * --json parsed and checked, --dry-run changing nothing (the spool is read back after), --yes
 * required for a filter with several matches, bounce queueing a DSN with the reason, and the
 * refusal while a server holds the spool.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import type { ActionResultV1, ExplainV1, MessageDetailV1, MessageListV1 } from '../../src/api/index.js';
import { openSqliteStore } from '../../src/queue/sqlite/index.js';
import type { QueueId } from '../../src/queue/index.js';
import { startTestServer, startTestServerOn } from '../support/server.js';
import { submit } from '../support/submit.js';
import { described, runPostwire } from '../support/cli.js';
import { startFakeDns } from '../fakes/fake-dns.js';
import type { FakeDns } from '../fakes/fake-dns.js';

const MSG = (n: number): string => `Subject: offline ${n}\r\nFrom: someone@src.test\r\n\r\n${'x'.repeat(n * 100)}\r\n`;

describe('postwire queue and explain, offline (--spool)', () => {
  let spool: string;
  let dns: FakeDns;
  const ids: QueueId[] = [];
  const q = (...args: string[]) => runPostwire(['queue', ...args, '--spool', spool]);
  const json = async <T>(...args: string[]): Promise<T> => {
    const r = await q(...args, '--json');
    assert.equal(r.code, 0, described(r));
    return JSON.parse(r.stdout) as T;
  };
  /** The spool as the store sees it: each message's recipient states. */
  const states = async (): Promise<Record<string, string[]>> => {
    const store = await openSqliteStore({ dir: spool });
    try {
      return Object.fromEntries((await store.listMessages({ limit: 1000 })).map((m) => [m.id, m.recipients.map((r) => r.state)]));
    } finally {
      await store.close();
    }
  };

  before(async () => {
    dns = await startFakeDns({ 'example.net': { mx: [[10, 'mx1.example.net']] }, 'mx1.example.net': { a: ['192.0.2.1'] } });
    const server = await startTestServer();
    spool = server.spool;
    ids.push(await submit(server, 'alice@src.test', ['bob@example.net'], MSG(3)));
    ids.push(await submit(server, 'alice@src.test', ['carol@other.test', 'dan@example.net'], MSG(1)));
    ids.push(await submit(server, 'mallory@spam.test', ['erin@other.test'], MSG(2)));
    await server.close();
  });

  after(async () => {
    await dns.close();
    await rm(spool, { recursive: true, force: true });
  });

  it('list: every message as JSON, and a table for people', async () => {
    const list = await json<MessageListV1>('list');
    assert.deepEqual(list.messages.map((m) => m.id), ids);
    assert.deepEqual(list.messages[1]?.recipients, [{ address: 'carol@other.test', state: 'queued' }, { address: 'dan@example.net', state: 'queued' }]);
    const table = await q('list');
    assert.equal(table.code, 0, described(table));
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^ID\s+AGE\s+SIZE\s+SENDER\s+RECIPIENTS\s+NEXT\s+LAST REPLY$/);
    assert.equal(lines.length, 4);
    assert.match(lines[2] ?? '', new RegExp(`^${ids[1]}\\s+\\d+s\\s+\\d+\\s+alice@src\\.test\\s+carol@other\\.test:queued,dan@example\\.net:queued\\s+now`));
    assert.match(table.stderr, /3 message\(s\)/);
  });

  it('list: each filter, the sort and paging', async () => {
    const idsOf = async (...args: string[]): Promise<string[]> => (await json<MessageListV1>('list', ...args)).messages.map((m) => m.id);
    assert.deepEqual(await idsOf('--state', 'queued'), ids);
    assert.deepEqual(await idsOf('--state', 'held'), []);
    assert.deepEqual(await idsOf('--domain', 'example.net'), [ids[0], ids[1]]);
    assert.deepEqual(await idsOf('--sender', 'MALLORY'), [ids[2]]);
    assert.deepEqual(await idsOf('--recipient', 'carol'), [ids[1]]);
    assert.deepEqual(await idsOf('--older-than', '1h'), []);
    assert.deepEqual(await idsOf('--older-than', '0s'), ids);
    assert.deepEqual(await idsOf('--reply', '451'), [], 'no attempt yet: no reply to match');
    assert.deepEqual(await idsOf('--sort', 'size'), [ids[1], ids[2], ids[0]]);
    const page = await json<MessageListV1>('list', '--limit', '2');
    assert.deepEqual(page.messages.map((m) => m.id), [ids[0], ids[1]]);
    assert.ok(page.next);
    assert.deepEqual(await idsOf('--limit', '2', '--cursor', page.next), [ids[2]]);
    const human = await q('list', '--limit', '2');
    assert.match(human.stderr, /more: --cursor \S+/);
    const bad = await q('list', '--state', 'lost');
    assert.equal(bad.code, 2, described(bad));
    assert.match(bad.stderr, /state must be one of/);
    const badAge = await q('list', '--older-than', 'soon');
    assert.equal(badAge.code, 2, described(badAge));
    assert.match(badAge.stderr, /--older-than/);
  });

  it('show: the envelope, the headers and the history, readable and as JSON', async () => {
    const detail = await json<MessageDetailV1>('show', ids[1] ?? '');
    assert.equal(detail.id, ids[1]);
    assert.equal(detail.sender, 'alice@src.test');
    assert.deepEqual(detail.headers.map((h) => h.name), ['Received', 'Subject', 'From']);
    const page = await q('show', ids[1] ?? '');
    assert.equal(page.code, 0, described(page));
    for (const part of [`Message ${ids[1]}`, 'sender     <alice@src.test>', 'Subject: offline 1', 'History', '(no attempt yet)', 'Next: first attempt']) {
      assert.ok(page.stdout.includes(part), `${part}\n${page.stdout}`);
    }
    const missing = await q('show', '01AAAAAAAAAAAAAAAA');
    assert.equal(missing.code, 1, described(missing));
    assert.match(missing.stderr, /no message 01AAAAAAAAAAAAAAAA in the queue \[NOT_FOUND\]/);
    const badId = await q('show', 'nonsense');
    assert.equal(badId.code, 2, described(badId));
    assert.match(badId.stderr, /BAD_ID/);
  });

  it('hold by filter: several matches need --yes, --dry-run changes nothing', async () => {
    const before = await states();
    const refused = await q('hold', '--sender', 'alice');
    assert.equal(refused.code, 2, described(refused));
    assert.match(refused.stderr, /the filter matches 2 messages: add --yes/);
    assert.deepEqual(await states(), before, 'refused: nothing changed');
    const dry = await json<ActionResultV1>('hold', '--sender', 'alice', '--dry-run');
    assert.deepEqual(dry, { action: 'hold', dryRun: true, matched: 2, results: [{ id: ids[0], changed: true }, { id: ids[1], changed: true }] });
    const dryHuman = await q('hold', '--sender', 'alice', '--dry-run');
    assert.match(dryHuman.stdout, /hold \(dry run, nothing changed\): 2 matched, 2 would change/);
    assert.deepEqual(await states(), before, 'dry run: nothing changed');
    const done = await json<ActionResultV1>('hold', '--sender', 'alice', '--yes', '--reason', 'audit');
    assert.deepEqual(done.results.map((r) => [r.id, r.changed]), [[ids[0], true], [ids[1], true]]);
    const after = await states();
    assert.deepEqual([after[ids[0] ?? ''], after[ids[1] ?? ''], after[ids[2] ?? '']], [['held'], ['held', 'held'], ['queued']]);
    const shown = await json<MessageDetailV1>('show', ids[0] ?? '');
    assert.deepEqual(shown.history.map((h) => [h.note, h.results[0]?.reply]), [['hold', 'audit']]);
    assert.match(shown.next.why, /held by an operator: audit/);
  });

  it('release, retry and delete by id; a single match needs no --yes', async () => {
    const released = await json<ActionResultV1>('release', ids[0] ?? '', ids[1] ?? '');
    assert.deepEqual(released.results.map((r) => r.changed), [true, true]);
    assert.deepEqual((await states())[ids[0] ?? ''], ['deferred']);
    const retry = await q('retry', ids[0] ?? '');
    assert.equal(retry.code, 0, described(retry));
    assert.match(retry.stdout, new RegExp(`^${ids[0]}  changed`, 'm'));
    const again = await q('hold', '--recipient', 'erin@');
    assert.equal(again.code, 0, described(again));
    assert.match(again.stdout, /hold: 1 matched, 1 changed/);
    const before = await states();
    const dryDel = await json<ActionResultV1>('delete', ids[2] ?? '', '--dry-run');
    assert.deepEqual(dryDel, { action: 'delete', dryRun: true, matched: 1, results: [{ id: ids[2], changed: true }] });
    assert.deepEqual(await states(), before, 'dry run by id: nothing changed');
    const del = await q('delete', ids[2] ?? '', '--reason', 'spam');
    assert.equal(del.code, 0, described(del));
    assert.deepEqual((await states())[ids[2] ?? ''], ['deleted']);
    const nothing = await q('delete', ids[2] ?? '');
    assert.match(nothing.stdout, /unchanged: every recipient is already final/);
    const usage = await q('delete');
    assert.equal(usage.code, 2, described(usage));
    assert.match(usage.stderr, /give an ID or a filter/);
  });

  it('bounce: needs a reason, marks bounced, queues a DSN to the sender quoting it', async () => {
    const noReason = await q('bounce', ids[1] ?? '');
    assert.equal(noReason.code, 2, described(noReason));
    assert.match(noReason.stderr, /bounce needs --reason/);
    const r = await json<ActionResultV1>('bounce', ids[1] ?? '', '--reason', 'the customer closed the account');
    assert.equal(r.results[0]?.changed, true);
    assert.match(r.results[0]?.detail ?? '', /2 recipient\(s\) bounced; DSN (\S+) queued to alice@src\.test/);
    const dsnId = /DSN (\S+) queued/.exec(r.results[0]?.detail ?? '')?.[1] ?? '';
    const dsn = await json<MessageDetailV1>('show', dsnId);
    assert.equal(dsn.sender, '');
    assert.deepEqual(dsn.recipients.map((x) => x.address), ['alice@src.test']);
    const store = await openSqliteStore({ dir: spool });
    try {
      const chunks: Uint8Array[] = [];
      for await (const c of store.readBody(dsnId as QueueId)) chunks.push(c);
      const text = Buffer.concat(chunks).toString('utf8');
      assert.match(text, /the customer closed the account/);
      assert.match(text, /Action: failed/);
      assert.match(text, /Final-Recipient: rfc822;\s*carol@other\.test/i);
    } finally {
      await store.close();
    }
    assert.deepEqual((await states())[ids[1] ?? ''], ['bounced', 'bounced']);
  });

  it('explain an address offline: the route through the configured DNS', async () => {
    const r = await runPostwire(['explain', 'someone@example.net', '--spool', spool, '--dns', `127.0.0.1:${dns.port}`, '--json']);
    assert.equal(r.code, 0, described(r));
    const e = JSON.parse(r.stdout) as ExplainV1;
    assert.equal(e.destinations[0]?.route.kind, 'mx');
    assert.deepEqual(e.destinations[0]?.hosts, [{ host: 'mx1.example.net', port: 25, preference: 10, addresses: ['192.0.2.1'] }]);
    const human = await runPostwire(['explain', ids[0] ?? '', '--spool', spool, '--dns', `127.0.0.1:${dns.port}`]);
    assert.equal(human.code, 0, described(human));
    assert.match(human.stdout, /^Destination mx:example\.net: bob@example\.net$/m);
    assert.match(human.stdout, /^  hosts    1\. mx1\.example\.net:25 preference 10 → 192\.0\.2\.1$/m);
    assert.match(human.stdout, /^  tls      may: no route sets tls, so --tls-policy applies: may /m);
    const bad = await runPostwire(['explain', 'nonsense', '--spool', spool]);
    assert.equal(bad.code, 2, described(bad));
  });

  it('refuses a spool a running server holds, and a directory that is no spool', async () => {
    const server = await startTestServerOn(spool);
    try {
      const r = await q('list');
      assert.equal(r.code, 1, described(r));
      assert.match(r.stderr, /in use by a running postwire serve: use --admin HOST:PORT/);
    } finally {
      await server.close();
    }
    const none = await runPostwire(['queue', 'list', '--spool', `${spool}/nothing-here`]);
    assert.equal(none.code, 1, described(none));
    assert.match(none.stderr, /no spool at/);
  });
});
