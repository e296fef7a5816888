/**
 * The admin API v1 over real HTTP (127.0.0.1, port 0) against a real Postwire and its real
 * store (startTestServer: the composition root `serve` uses). Every route of ROUTES_V1, the
 * error contract (400 with a code and the field, UNKNOWN_FIELD, 404, 405, 409, 401) and the
 * token. Explain resolves through the fake DNS server, never the real one.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ActionResultV1, ApiErrorBodyV1, ExplainV1, MessageDetailV1, MessageListV1, OverviewV1, TimeseriesV1 } from '../../src/api/index.js';
import { ROUTES_V1 } from '../../src/api/index.js';
import { startTestServer } from '../support/server.js';
import type { TestServer } from '../support/server.js';
import { submit } from '../support/submit.js';
import { startFakeDns } from '../fakes/fake-dns.js';
import type { FakeDns } from '../fakes/fake-dns.js';

interface Reply<T = unknown> {
  readonly status: number;
  readonly body: T;
  readonly headers: Headers;
}

function client(server: TestServer, token?: string) {
  const admin = server.server.admin;
  assert.ok(admin, 'the admin listener is up');
  const base = `http://127.0.0.1:${admin.port}`;
  return async <T = unknown>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> => {
    const res = await fetch(base + path, {
      method,
      headers: {
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: (res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text) as T, headers: res.headers };
  };
}

function assertError(reply: Reply, status: number, code: string, field?: string): void {
  const body = reply.body as ApiErrorBodyV1;
  assert.equal(reply.status, status, JSON.stringify(reply.body));
  assert.equal(body.error.code, code, JSON.stringify(reply.body));
  assert.equal(typeof body.error.message, 'string');
  if (field !== undefined) assert.equal(body.error.field, field, JSON.stringify(reply.body));
}

const MSG = 'Subject: api test\r\nFrom: a@src.test\r\n\r\nhello\r\n';

describe('admin API v1 over HTTP', () => {
  let server: TestServer;
  let dns: FakeDns;
  let call: ReturnType<typeof client>;
  let first: string;
  let second: string;
  let third: string;

  before(async () => {
    dns = await startFakeDns({
      'example.net': { mx: [[10, 'mx1.example.net'], [20, 'mx2.example.net'], [30, 'mx3.example.net']] },
      'mx1.example.net': { a: ['192.0.2.1'] },
      'mx2.example.net': { a: ['192.0.2.2', '192.0.2.3'] },
      'nomx.test': { a: ['192.0.2.9'] },
      'nullmx.test': { mx: [[0, '.']] },
    });
    server = await startTestServer(['--admin', '127.0.0.1:0', '--dns', `127.0.0.1:${dns.port}`]);
    call = client(server);
    first = await submit(server, 'alice@src.test', ['bob@example.net', 'carol@other.test'], MSG);
    second = await submit(server, 'mallory@spam.test', ['dave@example.net'], MSG);
    third = await submit(server, 'alice@src.test', ['erin@other.test'], MSG);
  });

  after(async () => {
    await server.stop();
    await dns.close();
  });

  it('GET /messages lists every message, oldest first, with recipients and states', async () => {
    const r = await call<MessageListV1>('GET', '/api/v1/messages');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(r.body.messages.map((m) => m.id), [first, second, third]);
    const m = r.body.messages[0];
    assert.equal(m?.sender, 'alice@src.test');
    assert.deepEqual(m?.recipients, [{ address: 'bob@example.net', state: 'queued' }, { address: 'carol@other.test', state: 'queued' }]);
    assert.equal(m?.attempts, 0);
    assert.ok(m !== undefined && m.size > MSG.length && !Number.isNaN(Date.parse(m.receivedAt)));
    assert.equal(r.body.next, undefined);
  });

  it('GET /messages filters, sorts and pages by cursor', async () => {
    const ids = async (query: string): Promise<string[]> => {
      const r = await call<MessageListV1>('GET', `/api/v1/messages?${query}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.messages.map((m) => m.id);
    };
    assert.deepEqual(await ids('domain=EXAMPLE.net'), [first, second]);
    assert.deepEqual(await ids('sender=alice'), [first, third]);
    assert.deepEqual(await ids('recipient=erin'), [third]);
    assert.deepEqual(await ids('state=queued&domain=other.test'), [first, third]);
    assert.deepEqual(await ids('state=held'), []);
    assert.deepEqual(await ids('olderThanMs=3600000'), []);
    assert.deepEqual(await ids('olderThanMs=0'), [first, second, third]);
    assert.deepEqual(await ids('reply=nothing-like-this'), []);
    assert.deepEqual(await ids('sort=size&limit=3').then((x) => x.length), 3);
    const page1 = await call<MessageListV1>('GET', '/api/v1/messages?limit=2');
    assert.deepEqual(page1.body.messages.map((m) => m.id), [first, second]);
    assert.ok(page1.body.next);
    assert.deepEqual(await ids(`limit=2&cursor=${encodeURIComponent(page1.body.next)}`), [third]);
  });

  it('GET /messages answers bad query fields with 400, a code and the field', async () => {
    assertError(await call('GET', '/api/v1/messages?limit=abc'), 400, 'BAD_REQUEST', 'limit');
    assertError(await call('GET', '/api/v1/messages?limit=0'), 400, 'BAD_REQUEST', 'limit');
    assertError(await call('GET', '/api/v1/messages?limit=1001'), 400, 'BAD_REQUEST', 'limit');
    assertError(await call('GET', '/api/v1/messages?state=lost'), 400, 'BAD_REQUEST', 'state');
    assertError(await call('GET', '/api/v1/messages?sort=random'), 400, 'BAD_REQUEST', 'sort');
    assertError(await call('GET', '/api/v1/messages?olderThanMs=-5'), 400, 'BAD_REQUEST', 'olderThanMs');
    assertError(await call('GET', '/api/v1/messages?colour=blue'), 400, 'UNKNOWN_FIELD', 'colour');
    assertError(await call('GET', '/api/v1/messages?state=queued&state=held'), 400, 'BAD_REQUEST', 'state');
    assertError(await call('GET', '/api/v1/messages?cursor=garbage'), 400, 'BAD_REQUEST', 'cursor');
  });

  it('GET /messages/:id shows envelope, headers, history and what happens next', async () => {
    const r = await call<MessageDetailV1>('GET', `/api/v1/messages/${first}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const d = r.body;
    assert.equal(d.id, first);
    assert.equal(d.client.helo, 'source.test');
    assert.equal(d.smtputf8, false);
    assert.deepEqual(d.history, []);
    assert.equal(d.headers[0]?.name, 'Received', 'our trace header comes first, unfolded');
    assert.ok(!d.headers[0]?.value.includes('\r\n'));
    assert.deepEqual(d.headers.slice(1), [{ name: 'Subject', value: 'api test' }, { name: 'From', value: 'a@src.test' }]);
    assert.match(d.next.why, /first attempt/);
    assertError(await call('GET', '/api/v1/messages/not-an-id'), 400, 'BAD_ID');
    assertError(await call('GET', '/api/v1/messages/01AAAAAAAAAAAAAAAA'), 404, 'NOT_FOUND');
    assertError(await call('GET', `/api/v1/messages/${first}?verbose=1`), 400, 'UNKNOWN_FIELD', 'verbose');
  });

  it('POST /actions holds and releases by id, recorded in the history', async () => {
    const hold = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'hold', ids: [second], reason: 'looks like spam' });
    assert.equal(hold.status, 200, JSON.stringify(hold.body));
    assert.deepEqual(hold.body, { action: 'hold', dryRun: false, matched: 1, results: [{ id: second, changed: true }] });
    const held = await call<MessageDetailV1>('GET', `/api/v1/messages/${second}`);
    assert.deepEqual(held.body.recipients.map((x) => x.state), ['held']);
    assert.equal(held.body.history[0]?.note, 'hold');
    assert.deepEqual(held.body.history[0]?.results, [{ recipient: 'dave@example.net', state: 'held', reply: 'looks like spam' }]);
    assert.match(held.body.next.why, /held by an operator: looks like spam/);
    const again = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'hold', ids: [second] });
    assert.deepEqual(again.body.results, [{ id: second, changed: false, detail: 'no recipient is waiting for delivery' }]);
    const release = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'release', ids: [second] });
    assert.deepEqual(release.body.results, [{ id: second, changed: true }]);
    assert.deepEqual((await server.store.getMessage(second as never))?.recipients.map((x) => x.state), ['deferred']);
  });

  it('POST /actions with a filter: dry run changes nothing, more than one match needs confirm', async () => {
    const dry = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'hold', filter: { sender: 'alice' }, dryRun: true });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual(dry.body, { action: 'hold', dryRun: true, matched: 2, results: [{ id: first, changed: true }, { id: third, changed: true }] });
    assert.deepEqual((await server.store.getMessage(first as never))?.recipients.map((x) => x.state), ['queued', 'queued'], 'dry run: unchanged');
    assert.deepEqual(await server.store.history(first as never), []);
    const refused = await call('POST', '/api/v1/actions', { action: 'hold', filter: { sender: 'alice' } });
    assertError(refused, 409, 'CONFIRMATION_REQUIRED');
    assert.match((refused.body as ApiErrorBodyV1).error.message, /matches 2 messages/);
    assert.deepEqual(await server.store.history(first as never), [], 'refused: unchanged');
    const done = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'hold', filter: { sender: 'alice' }, confirm: true, reason: 'bulk' });
    assert.deepEqual(done.body.results.map((x) => x.changed), [true, true]);
    const one = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'release', filter: { recipient: 'erin@' } });
    assert.deepEqual(one.body.results, [{ id: third, changed: true }], 'one match: no confirm needed');
    await call('POST', '/api/v1/actions', { action: 'release', ids: [first] });
  });

  it('POST /actions retry, delete and bounce (with its DSN) by id', async () => {
    const extra = await submit(server, 'sender@src.test', ['gone@example.net'], MSG);
    const bounced = await submit(server, 'sender@src.test', ['closed@example.net'], MSG);
    // A fresh message has no deferred recipient: retry says why it changes nothing.
    const retry = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'retry', ids: [extra] });
    assert.deepEqual(retry.body.results, [{ id: extra, changed: false, detail: 'no recipient is deferred or ambiguous' }]);
    const del = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'delete', ids: [extra], reason: 'customer asked' });
    assert.equal(del.body.results[0]?.changed, true);
    assert.deepEqual((await server.store.getMessage(extra))?.recipients.map((x) => x.state), ['deleted']);
    assertError(await call('POST', '/api/v1/actions', { action: 'bounce', ids: [bounced] }), 400, 'BAD_REQUEST', 'reason');
    const before = (await server.store.listMessages({ limit: 1000 })).length;
    const b = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'bounce', ids: [bounced], reason: 'account closed' });
    assert.equal(b.body.results[0]?.changed, true, JSON.stringify(b.body));
    assert.match(b.body.results[0]?.detail ?? '', /DSN \S+ queued to sender@src\.test/);
    assert.deepEqual((await server.store.getMessage(bounced))?.recipients.map((x) => x.state), ['bounced']);
    const all = await server.messages();
    assert.equal(all.length, before + 1, 'one DSN queued');
    const dsn = all[all.length - 1];
    assert.equal(dsn?.envelope.sender, '', 'the DSN has the null sender');
    assert.deepEqual(dsn?.recipients.map((r) => r.address), ['sender@src.test']);
    assert.match(dsn?.body.toString('utf8') ?? '', /account closed/);
    // Nothing bounces a bounce: bouncing the DSN queues nothing.
    const bb = await call<ActionResultV1>('POST', '/api/v1/actions', { action: 'bounce', ids: [dsn?.id], reason: 'no' });
    assert.match(bb.body.results[0]?.detail ?? '', /no DSN: the message has the null sender/);
    assert.equal((await server.store.listMessages({ limit: 1000 })).length, before + 1);
  });

  it('POST /actions rejects bad bodies with 400, a code and the field', async () => {
    assertError(await call('POST', '/api/v1/actions', '{"action":'), 400, 'BAD_REQUEST');
    assertError(await call('POST', '/api/v1/actions', ''), 400, 'BAD_REQUEST');
    assertError(await call('POST', '/api/v1/actions', '[1]'), 400, 'BAD_REQUEST');
    assertError(await call('POST', '/api/v1/actions', { ids: [first] }), 400, 'BAD_REQUEST', 'action');
    assertError(await call('POST', '/api/v1/actions', { action: 'purge', ids: [first] }), 400, 'BAD_REQUEST', 'action');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: first }), 400, 'BAD_REQUEST', 'ids');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: [first], dryRun: 'yes' }), 400, 'BAD_REQUEST', 'dryRun');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: [first], reason: 7 }), 400, 'BAD_REQUEST', 'reason');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: [first], force: true }), 400, 'UNKNOWN_FIELD', 'force');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', filter: { sender: 'a', colour: 'red' } }), 400, 'UNKNOWN_FIELD', 'filter.colour');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', filter: { olderThanMs: '1h' } }), 400, 'BAD_REQUEST', 'filter.olderThanMs');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold' }), 400, 'BAD_REQUEST', 'ids');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: [first], filter: {} }), 400, 'BAD_REQUEST');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: [first, 'x'] }), 400, 'BAD_ID', 'ids[1]');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: ['01AAAAAAAAAAAAAAAA'] }), 404, 'NOT_FOUND');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: [first] }, { 'content-type': 'text/plain' }), 400, 'BAD_REQUEST');
    assertError(await call('POST', '/api/v1/actions?action=hold', { action: 'hold', ids: [first] }), 400, 'BAD_REQUEST');
    assertError(await call('POST', '/api/v1/actions', { action: 'hold', ids: [first] }, { 'content-type': 'application/x-www-form-urlencoded' }), 400, 'BAD_REQUEST');
    const huge = JSON.stringify({ action: 'hold', ids: [first], reason: 'x'.repeat(2 * 1024 * 1024) });
    assertError(await call('POST', '/api/v1/actions', huge), 400, 'BAD_REQUEST');
    assert.deepEqual(await server.store.history(first as never).then((h) => h.filter((e) => e.note === 'hold').length), 1, 'none of them changed anything');
  });

  it('GET /explain for an address: MX hosts in order with addresses, TLS and the window', async () => {
    const r = await call<ExplainV1>('GET', '/api/v1/explain?target=someone@example.net');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.kind, 'address');
    const d = r.body.destinations[0];
    assert.equal(d?.destination, 'mx:example.net');
    assert.equal(d?.route.kind, 'mx');
    assert.deepEqual(d?.hosts.map((h) => [h.host, h.preference, h.addresses]), [
      ['mx1.example.net', 10, ['192.0.2.1']],
      ['mx2.example.net', 20, ['192.0.2.2', '192.0.2.3']],
      ['mx3.example.net', 30, undefined],
    ]);
    assert.match(d?.hosts[2]?.error ?? '', /NXDOMAIN|NOTFOUND|not/i, 'a host without an address is shown, with why it is skipped');
    assert.match(d?.route.detail ?? '', /MX example\.net: 10 mx1\.example\.net, 20 mx2\.example\.net, 30 mx3\.example\.net/);
    assert.equal(d?.tls.policy, 'may');
    assert.match(d?.tls.why ?? '', /no route sets tls, so --tls-policy applies: may \(STARTTLS when offered/);
    assert.match(d?.tls.why ?? '', /MTA-STS/);
    assert.deepEqual(d?.window, { concurrency: 20, active: 0, waiting: 0 });
    const fallback = await call<ExplainV1>('GET', '/api/v1/explain?target=x@nomx.test');
    assert.equal(fallback.body.destinations[0]?.route.kind, 'a-fallback');
    const nullMx = await call<ExplainV1>('GET', '/api/v1/explain?target=x@nullmx.test');
    assert.equal(nullMx.body.destinations[0]?.route.kind, 'null-mx');
    assert.match(nullMx.body.destinations[0]?.why ?? '', /would bounce/);
    const literal = await call<ExplainV1>('GET', `/api/v1/explain?target=${encodeURIComponent('x@[192.0.2.7]')}`);
    assert.equal(literal.body.destinations[0]?.route.kind, 'literal');
  });

  it('GET /explain for a message: one destination per next hop, with its recipients', async () => {
    const r = await call<ExplainV1>('GET', `/api/v1/explain?target=${first}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.kind, 'message');
    assert.deepEqual(r.body.destinations.map((d) => [d.destination, d.recipients]), [
      ['mx:example.net', ['bob@example.net']],
      ['other.test', ['carol@other.test']],
    ]);
    assert.equal(r.body.destinations[1]?.route.kind, 'error', 'other.test does not exist in the fake zone');
    assertError(await call('GET', '/api/v1/explain'), 400, 'BAD_REQUEST', 'target');
    assertError(await call('GET', '/api/v1/explain?target=nonsense'), 400, 'BAD_REQUEST', 'target');
    assertError(await call('GET', '/api/v1/explain?target=01AAAAAAAAAAAAAAAA'), 404, 'NOT_FOUND');
  });

  it('GET /overview counts recipients per state and per destination; GET /timeseries has the current minute', async () => {
    const r = await call<OverviewV1>('GET', '/api/v1/overview');
    assert.equal(r.status, 200);
    const counts = await server.store.countByState();
    assert.deepEqual(r.body.states, counts);
    assert.ok(r.body.destinations.length > 0, 'one row per recipient domain');
    const series = await call<TimeseriesV1>('GET', '/api/v1/timeseries');
    assert.equal(series.status, 200);
    assert.ok(series.body.minutes.length >= 1);
    assertError(await call('GET', '/api/v1/overview?x=1'), 400, 'UNKNOWN_FIELD', 'x');
    assertError(await call('GET', '/api/v1/timeseries?x=1'), 400, 'UNKNOWN_FIELD', 'x');
  });

  it('unknown routes are 404 NOT_FOUND, a wrong method is 405 with Allow', async () => {
    assertError(await call('GET', '/api/v1/nothing'), 404, 'NOT_FOUND');
    assertError(await call('GET', '/api/v1'), 404, 'NOT_FOUND');
    assertError(await call('GET', '/api/v2/messages'), 404, 'NOT_FOUND');
    assertError(await call('GET', '/nothing'), 404, 'NOT_FOUND');
    const wrong = await call('DELETE', '/api/v1/messages');
    assertError(wrong, 405, 'METHOD_NOT_ALLOWED');
    assert.equal(wrong.headers.get('allow'), 'GET');
    const get = await call('GET', '/api/v1/actions');
    assertError(get, 405, 'METHOD_NOT_ALLOWED');
    assert.equal(get.headers.get('allow'), 'POST');
    assertError(await call('POST', '/metrics', {}), 405, 'METHOD_NOT_ALLOWED');
    const metrics = await call<string>('GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /postwire_/);
  });

  it('without a token, a request to a DNS name is refused (DNS rebinding), and a body must be JSON', async () => {
    const admin = server.server.admin;
    assert.ok(admin);
    const { request } = await import('node:http');
    const raw = (headers: Record<string, string>, body?: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: admin.port, path: body === undefined ? '/api/v1/overview' : '/api/v1/actions', method: body === undefined ? 'GET' : 'POST', headers }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const rebound = await raw({ host: `evil.example:${admin.port}` });
    assert.equal(rebound.status, 401, rebound.body);
    assert.match(rebound.body, /UNAUTHORIZED/);
    assert.equal((await raw({ host: `localhost:${admin.port}` })).status, 200);
    assert.equal((await raw({ host: `127.0.0.1:${admin.port}` })).status, 200);
    const untyped = await raw({ host: `127.0.0.1:${admin.port}` }, JSON.stringify({ action: 'hold', ids: [first] }));
    assert.equal(untyped.status, 400, untyped.body);
    assert.match(untyped.body, /content-type application\/json/);
  });

  it('ROUTES_V1 is what the server serves', () => {
    assert.deepEqual(Object.keys(ROUTES_V1).sort(), ['act', 'explain', 'list', 'overview', 'show', 'timeseries']);
  });
});

describe('admin API v1: --admin-token', () => {
  it('is required when configured, accepted when right; /metrics stays open', async () => {
    const server = await startTestServer(['--admin', '127.0.0.1:0', '--admin-token', 'correct-horse-battery']);
    try {
      const anonymous = client(server);
      const wrong = client(server, 'correct-horse-batterY');
      const right = client(server, 'correct-horse-battery');
      const none = await anonymous('GET', '/api/v1/messages');
      assertError(none, 401, 'UNAUTHORIZED');
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
      assertError(await wrong('GET', '/api/v1/messages'), 401, 'UNAUTHORIZED');
      assertError(await wrong('POST', '/api/v1/actions', { action: 'hold', ids: [] }), 401, 'UNAUTHORIZED');
      assertError(await anonymous('GET', '/api/v1/nothing'), 401, 'UNAUTHORIZED', undefined);
      assertError(await anonymous('GET', '/api/v1/messages', undefined, { authorization: 'Basic Y29ycmVjdA==' }), 401, 'UNAUTHORIZED');
      const ok = await right<MessageListV1>('GET', '/api/v1/messages');
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.body.messages, []);
      assert.equal((await anonymous('GET', '/metrics')).status, 200);
    } finally {
      await server.stop();
    }
  });
});
