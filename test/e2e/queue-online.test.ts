/**
 * `postwire queue` and `postwire explain` online: the real binary against a running
 * `postwire serve` (a child process, delivering through --smarthost to the fake sink, admin API
 * on port 0 with a token). The sink's magic recipients make mail stay deferred: a retry makes a
 * deferred message delivered, a bounce sends the sender a DSN with the operator's reason and the
 * remote's last reply, explain shows the smart host route and the last reply; the token is
 * required and --dry-run changes nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ActionResultV1, ExplainV1, MessageDetailV1, MessageListV1 } from '../../src/api/index.js';
import { startServe } from '../support/process.js';
import type { ServeProcess } from '../support/process.js';
import { submit } from '../support/submit.js';
import type { TestServer } from '../support/server.js';
import { described, runPostwire } from '../support/cli.js';
import { until } from '../support/wait.js';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import type { FakeSmtpServer } from '../fakes/fake-smtp-server.js';

const TOKEN = 'online-test-token-0123456789';
const MSG = 'Subject: online\r\nFrom: someone@src.test\r\n\r\nhello\r\n';

describe('postwire queue and explain, online (--admin)', () => {
  let sink: FakeSmtpServer;
  let serve: ServeProcess;
  let spool: string;
  let admin: string;
  let retried: string;
  let stuck: string;
  const env = { POSTWIRE_ADMIN_TOKEN: TOKEN };
  const q = (...args: string[]) => runPostwire(['queue', ...args, '--admin', admin], env);
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`http://${admin}/api/v1${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200, path);
    return (await res.json()) as T;
  };
  const statesOf = async (id: string): Promise<string[]> => (await api<MessageDetailV1>(`/messages/${id}`)).recipients.map((r) => r.state);

  before(async () => {
    sink = await startFakeSmtp();
    spool = await mkdtemp(join(tmpdir(), 'postwire-online-'));
    let adminPort: number | undefined;
    serve = await startServe(
      ['--spool', spool, '--delivery', 'on', '--smarthost', `127.0.0.1:${sink.port}`, '--retry', '1h', '--admin', '127.0.0.1:0', '--admin-token', TOKEN],
      {
        onStdoutLine: (line) => {
          const m = /"admin":\{"host":"127\.0\.0\.1","port":(\d+)\}/.exec(line);
          if (m) adminPort = Number(m[1]);
        },
      },
    );
    admin = `127.0.0.1:${await until('the admin listener in the log', () => adminPort)}`;
    const smtp = { port: serve.port } as TestServer;
    retried = await submit(smtp, 'alice@src.test', ['tempfail-data-once-a@dest.test'], MSG);
    stuck = await submit(smtp, 'bob@src.test', ['always-451-b@dest.test'], MSG);
    await until('both messages deferred', async () => (await statesOf(retried))[0] === 'deferred' && (await statesOf(stuck))[0] === 'deferred');
  });

  after(async () => {
    serve.kill('SIGTERM');
    await serve.exited;
    await sink.close();
    await rm(spool, { recursive: true, force: true });
  });

  it('the token is required: without it the command fails with UNAUTHORIZED', async () => {
    const r = await runPostwire(['queue', 'list', '--admin', admin]);
    assert.equal(r.code, 1, described(r));
    assert.match(r.stderr, /\[UNAUTHORIZED\]/);
    const wrong = await runPostwire(['queue', 'list', '--admin', admin, '--admin-token', 'nope']);
    assert.equal(wrong.code, 1, described(wrong));
  });

  it('list: the deferred mail, by state and by the remote reply', async () => {
    const r = await q('list', '--state', 'deferred', '--json');
    assert.equal(r.code, 0, described(r));
    const list = JSON.parse(r.stdout) as MessageListV1;
    assert.deepEqual(list.messages.map((m) => m.id), [retried, stuck]);
    assert.match(list.messages[0]?.recipients[0]?.lastReply ?? '', /^451/);
    assert.equal(list.messages[0]?.attempts, 1);
    assert.ok(list.messages[0]?.nextAttemptAt !== undefined);
    const byReply = JSON.parse((await q('list', '--reply', '451', '--domain', 'dest.test', '--json')).stdout) as MessageListV1;
    assert.deepEqual(byReply.messages.map((m) => m.id), [retried, stuck]);
    const none = JSON.parse((await q('list', '--reply', '550', '--json')).stdout) as MessageListV1;
    assert.deepEqual(none.messages, []);
    const table = await q('list', '--recipient', 'always-451');
    assert.equal(table.code, 0, described(table));
    assert.match(table.stdout, new RegExp(`^${stuck}\\s.*always-451-b@dest\\.test:deferred\\s+in (\\d+h)?(\\d+m)?\\s+451`, 'm'));
  });

  it('show: every attempt with its next hop and the reply verbatim, and why the next attempt', async () => {
    const r = await q('show', stuck);
    assert.equal(r.code, 0, described(r));
    assert.match(r.stdout, new RegExp(`^  \\S+  via 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${sink.port}$`, 'm'));
    assert.match(r.stdout, /^    always-451-b@dest\.test → deferred$/m);
    assert.match(r.stdout, /^      451 /m);
    assert.match(r.stdout, /^Next: retry at \S+Z: 451 4\.3\.0 .*\(after attempt 1; schedule 1h, the last repeating\)$/m);
  });

  it('explain a queued message: the smart host route, the window, the last reply and the next attempt', async () => {
    const r = await runPostwire(['explain', stuck, '--admin', admin, '--json'], env);
    assert.equal(r.code, 0, described(r));
    const e = JSON.parse(r.stdout) as ExplainV1;
    assert.equal(e.kind, 'message');
    const d = e.destinations[0];
    assert.equal(d?.destination, `smarthost:127.0.0.1:${sink.port}`);
    assert.equal(d?.route.kind, 'smarthost');
    assert.deepEqual(d?.hosts, [{ host: '127.0.0.1', port: sink.port, addresses: ['127.0.0.1'] }]);
    assert.equal(d?.window.concurrency, 20);
    assert.match(d?.lastReply ?? '', /^451/);
    assert.ok(d?.nextAttemptAt);
    assert.match(d?.why ?? '', /^retry at \S+Z: 451 /);
    const human = await runPostwire(['explain', 'someone@elsewhere.test', '--admin', admin], env);
    assert.equal(human.code, 0, described(human));
    assert.match(human.stdout, /^  route    smarthost: /m);
  });

  it('--dry-run changes nothing; hold and release by filter work online', async () => {
    const before = await api<MessageDetailV1>(`/messages/${stuck}`);
    const dry = await q('hold', '--domain', 'dest.test', '--dry-run', '--json');
    assert.equal(dry.code, 0, described(dry));
    assert.equal((JSON.parse(dry.stdout) as ActionResultV1).matched, 2);
    assert.deepEqual(await api<MessageDetailV1>(`/messages/${stuck}`), before, 'nothing changed');
    const refused = await q('hold', '--domain', 'dest.test');
    assert.equal(refused.code, 2, described(refused));
    assert.deepEqual(await api<MessageDetailV1>(`/messages/${stuck}`), before, 'nothing changed');
    const hold = await q('hold', '--recipient', 'always-451', '--reason', 'online check');
    assert.equal(hold.code, 0, described(hold));
    assert.deepEqual(await statesOf(stuck), ['held']);
    const release = await q('release', stuck);
    assert.equal(release.code, 0, described(release));
    // Released: due at once, tried again, and the sink says 451 again.
    await until('the released message tried again', async () => (await api<MessageDetailV1>(`/messages/${stuck}`)).attempts === 2);
    assert.deepEqual(await statesOf(stuck), ['deferred']);
  });

  it('retry makes a deferred message delivered', async () => {
    const r = await q('retry', retried, '--json');
    assert.equal(r.code, 0, described(r));
    assert.deepEqual(JSON.parse(r.stdout), { action: 'retry', dryRun: false, matched: 1, results: [{ id: retried, changed: true }] });
    await until('the retried message delivered', async () => (await statesOf(retried))[0] === 'delivered');
    assert.ok(sink.delivered.some((t) => t.rcpts.includes('tempfail-data-once-a@dest.test')));
    const shown = await api<MessageDetailV1>(`/messages/${retried}`);
    assert.deepEqual(shown.history.map((h) => h.note ?? h.results[0]?.state), ['deferred', 'retry', 'delivered']);
  });

  it('bounce sends the sender a DSN with the reason and the remote reply', async () => {
    const bouncedMetric = async (): Promise<number> => {
      const text = await (await fetch(`http://${admin}/metrics`)).text();
      return Number(/^postwire_recipients_total\{state="bounced"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    const bouncedBefore = await bouncedMetric();
    const r = await q('bounce', stuck, '--reason', 'the customer closed the account', '--json');
    assert.equal(r.code, 0, described(r));
    const result = JSON.parse(r.stdout) as ActionResultV1;
    assert.equal(result.results[0]?.changed, true);
    assert.deepEqual(await statesOf(stuck), ['bounced']);
    assert.equal(await bouncedMetric(), bouncedBefore + 1, 'an operator bounce is counted like any other');
    const dsn = await until('the DSN delivered to the sink', () => sink.delivered.find((t) => t.mailFrom === '' && t.rcpts.includes('bob@src.test')));
    const text = dsn.data.toString('utf8');
    assert.match(text, /the customer closed the account/);
    assert.match(text, /Action: failed/);
    assert.match(text, /Final-Recipient: rfc822;\s*always-451-b@dest\.test/i);
    assert.match(text, /Diagnostic-Code: smtp;\s*451/i);
  });
});
