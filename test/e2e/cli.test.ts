/**
 * The real `postwire` binary (bin/postwire.js under this Node): exit codes and messages of
 * DESIGN §3 as a shell or a supervisor sees them. 2 for a usage or configuration error, naming
 * the flag; 1 for a runtime failure such as a port already in use; 0 for check-config and help.
 * Every child is spawned asynchronously with a deadline, so a hung binary fails the test.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { described, runPostwire } from '../support/cli.js';
import type { CliRun } from '../support/cli.js';

const postwire = (args: readonly string[], timeoutMs = 20_000): Promise<CliRun> => runPostwire(args, {}, timeoutMs);
const show = described;

describe('postwire serve: configuration errors exit 2 before starting anything', () => {
  it('--max-recipients abc names the flag', async () => {
    const r = await postwire(['serve', '--max-recipients', 'abc']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /^postwire: --max-recipients: /m, show(r));
    assert.doesNotMatch(r.stderr, /listening on/, 'nothing was started');
  });

  it('--listen nonsense names the flag', async () => {
    const r = await postwire(['serve', '--listen', 'nonsense']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /^postwire: --listen: .*nonsense/m, show(r));
  });

  it('an unknown flag is named', async () => {
    const r = await postwire(['serve', '--frobnicate-the-queue', '3']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--frobnicate-the-queue/, show(r));
    assert.match(r.stderr, /unknown/i, show(r));
  });

  it('--tls-cert without --tls-key names the missing half', async () => {
    const r = await postwire(['serve', '--tls-cert', 'x']);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /--tls-cert: needs --tls-key too/, show(r));
  });
});

describe('postwire serve: runtime failures exit 1', () => {
  it('a port already in use: exit 1 saying it cannot listen', { timeout: 30_000 }, async () => {
    const squatter = createServer();
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.listen({ host: '127.0.0.1', port: 0 }, resolve);
    });
    const { port } = squatter.address() as AddressInfo;
    const spool = await mkdtemp(join(tmpdir(), 'postwire-cli-'));
    try {
      const r = await postwire(['serve', '--listen', `127.0.0.1:${port}`, '--spool', spool, '--hostname', 'mx.postwire.test']);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, /^postwire: cannot listen: .*EADDRINUSE/m, show(r));
      assert.doesNotMatch(r.stderr, /listening on/, show(r));
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
      await rm(spool, { recursive: true, force: true });
    }
  });
});

describe('postwire: other commands', () => {
  it('check-config --max-recipients 7 exits 0 and prints the effective value', async () => {
    const r = await postwire(['check-config', '--max-recipients', '7']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^max-recipients = 7$/m, show(r));
    assert.match(r.stdout, /^listen = /m, 'the other settings are printed too');
    assert.equal(r.stderr, '', 'nothing on stderr');
  });

  it('no arguments: usage on stderr, exit 2', async () => {
    const r = await postwire([]);
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /Usage: postwire <command>/, show(r));
    assert.equal(r.stdout, '', 'stdout stays clean for a usage error');
  });

  it('help: usage on stdout, exit 0', async () => {
    const r = await postwire(['help']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /Usage: postwire <command>/, show(r));
    assert.match(r.stdout, /^ {2}serve /m, 'lists serve');
    assert.match(r.stdout, /--max-recipients/, 'lists the flags');
  });
});
