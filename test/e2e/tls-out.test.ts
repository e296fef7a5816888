/**
 * Outbound TLS through the real binary: `postwire serve` with a TOML file whose routes set
 * `tls = "verify"` (one to a sink whose certificate names someone else, one to a sink that wants
 * AUTH over STARTTLS) and `--tls-ca-file` the test CA. The wrong name is deferred, never sent in
 * plain text, with the reason in the message's history and in `postwire explain`; the AUTH route
 * delivers inside TLS with the credentials from `auth_password_file`, which `check-config` names
 * but never prints.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExplainV1, MessageDetailV1 } from '../../src/api/index.js';
import { startServe } from '../support/process.js';
import type { ServeProcess } from '../support/process.js';
import { submit } from '../support/submit.js';
import type { TestServer } from '../support/server.js';
import { described, runPostwire } from '../support/cli.js';
import { until } from '../support/wait.js';
import { createTestCa } from '../support/test-ca.js';
import { startFakeSmtp } from '../fakes/fake-smtp-server.js';
import type { FakeSmtpServer } from '../fakes/fake-smtp-server.js';

const TOKEN = 'tls-out-test-token-0123456789';
const PASSWORD = 'n0t-in-any-output';
const MSG = 'Subject: tls\r\nFrom: someone@src.test\r\n\r\nhello over TLS\r\n';

describe('outbound TLS through postwire serve: route tls verify, --tls-ca-file, smart-host AUTH', () => {
  let wrongName: FakeSmtpServer;
  let provider: FakeSmtpServer;
  let serve: ServeProcess;
  let dir: string;
  let configFile: string;
  let admin: string;
  const env = { POSTWIRE_ADMIN_TOKEN: TOKEN };
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`http://${admin}/api/v1${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200, path);
    return (await res.json()) as T;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postwire-tls-out-'));
    const ca = await createTestCa();
    wrongName = await startFakeSmtp({ tls: await ca.issue(['someone-else.test']) });
    provider = await startFakeSmtp({ tls: await ca.issue(['127.0.0.1']), auth: { user: 'relay@src.test', password: PASSWORD }, requireAuth: true });
    const passwordFile = join(dir, 'provider.password');
    await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    configFile = join(dir, 'postwire.toml');
    await writeFile(
      configFile,
      [
        `tls-ca-file = ${JSON.stringify(ca.caFile)}`,
        '',
        '[[route]]',
        'pattern = "verify.test"',
        `smarthost = "127.0.0.1:${wrongName.port}"`,
        'tls = "verify"',
        '',
        '[[route]]',
        'pattern = "*"',
        `smarthost = "127.0.0.1:${provider.port}"`,
        'tls = "verify"',
        'auth_user = "relay@src.test"',
        `auth_password_file = ${JSON.stringify(passwordFile)}`,
        '',
      ].join('\n'),
    );
    let adminPort: number | undefined;
    serve = await startServe(
      ['--config', configFile, '--spool', join(dir, 'spool'), '--delivery', 'on', '--retry', '1h', '--admin', '127.0.0.1:0', '--admin-token', TOKEN],
      {
        onStdoutLine: (line) => {
          const m = /"admin":\{"host":"127\.0\.0\.1","port":(\d+)\}/.exec(line);
          if (m) adminPort = Number(m[1]);
          if (line.includes(PASSWORD)) throw new Error(`the password is in the log: ${line}`);
        },
      },
    );
    admin = `127.0.0.1:${await until('the admin listener in the log', () => adminPort)}`;
  });

  after(async () => {
    serve.kill('SIGTERM');
    await serve.exited;
    await wrongName.close();
    await provider.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('verify refuses the wrong name: deferred 4.7.5, no MAIL sent, the reason in the history and in explain', async () => {
    const id = await submit({ port: serve.port } as TestServer, 'alice@src.test', ['bob@verify.test'], MSG);
    const detail = await until('the attempt', async () => {
      const d = await api<MessageDetailV1>(`/messages/${id}`);
      return d.recipients[0]?.state === 'deferred' ? d : undefined;
    });
    const reply = detail.recipients[0]?.lastReply ?? '';
    assert.match(reply, /^451 4\.7\.5 TLS required by policy verify \(route 'verify\.test'\): certificate name mismatch: .*127\.0\.0\.1/);
    assert.ok(!wrongName.lines.some((l) => l.line.startsWith('MAIL')), 'nothing sent, in TLS or in plain text');
    assert.equal(wrongName.transactions.length, 0);
    const r = await runPostwire(['explain', id, '--admin', admin, '--json'], env);
    assert.equal(r.code, 0, described(r));
    const e = JSON.parse(r.stdout) as ExplainV1;
    const d = e.destinations[0];
    assert.equal(d?.tls.policy, 'verify');
    assert.match(d?.tls.why ?? '', /route 'verify\.test' sets tls verify/);
    assert.match(d?.lastReply ?? '', /TLS required by policy verify .*certificate name mismatch/);
    const human = await runPostwire(['explain', id, '--admin', admin], env);
    assert.match(human.stdout, /certificate name mismatch/);
  });

  it('the provider route: AUTH inside STARTTLS, delivered; the password is in no output', async () => {
    const id = await submit({ port: serve.port } as TestServer, 'alice@src.test', ['carol@elsewhere.test'], MSG);
    await until('delivered', async () => (await api<MessageDetailV1>(`/messages/${id}`)).recipients[0]?.state === 'delivered');
    assert.equal(provider.delivered.length, 1);
    assert.equal(provider.delivered[0]?.authUser, 'relay@src.test');
    assert.ok(provider.delivered[0]?.tls);
    assert.ok(provider.lines.filter((l) => l.line.startsWith('AUTH')).every((l) => l.tls));
    const detail = await api<MessageDetailV1>(`/messages/${id}`);
    const history = JSON.stringify(detail);
    assert.match(history, /certificate verified/);
    assert.ok(!history.includes(PASSWORD));
    const check = await runPostwire(['check-config', '--config', configFile]);
    assert.equal(check.code, 0, described(check));
    assert.match(check.stdout, /"auth_user":"relay@src\.test","auth_password_file":"[^"]+provider\.password"/);
    assert.match(check.stdout, /^tls-policy = may$/m);
    assert.ok(!check.stdout.includes(PASSWORD) && !check.stderr.includes(PASSWORD));
  });
});
