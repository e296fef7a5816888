/**
 * `postwire user add|remove|list` through the real binary, as a shell runs it: the password from
 * stdin (--password-stdin), the file written with mode 0600 and never holding the password,
 * `list` never printing a hash, and the exit codes of DESIGN §3 (2 usage, 1 state or I/O).
 * Then `postwire serve --users` with that file authenticates the user (the CLI's hash is what the
 * server verifies), and a user file or certificate that cannot be used stops serve with exit 2.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { verify } from '@node-rs/argon2';
import { described, runPostwire } from '../support/cli.js';
import { BIN, startServe } from '../support/process.js';
import { RawClient } from '../support/raw-client.js';
import { plain } from '../support/users.js';

describe('postwire user', () => {
  it('adds, lists and removes users in an atomically written 0600 file; errors exit 2 or 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-user-cli-'));
    const file = join(dir, 'users');
    try {
      const add = await runPostwire(['user', 'add', 'alice', '--sender', 'alice@example.test', '--sender', 'billing@example.test', '--password-stdin', '--users', file], {}, 30_000, { stdin: 'open sesame\n' });
      assert.equal(add.code, 0, described(add));
      assert.match(add.stderr, /added alice/);
      const text = await readFile(file, 'utf8');
      assert.match(text, /^alice:\$argon2id\$v=19\$[^:\n]+:alice@example\.test,billing@example\.test$/m);
      assert.ok(!text.includes('open sesame'), 'the password is not in the file');
      assert.equal((await stat(file)).mode & 0o777, 0o600);

      const bob = await runPostwire(['user', 'add', 'bob', '--password-stdin'], { POSTWIRE_USERS: file }, 30_000, { stdin: 'b' });
      assert.equal(bob.code, 0, described(bob));
      const list = await runPostwire(['user', 'list', '--users', file]);
      assert.equal(list.code, 0, described(list));
      assert.equal(list.stdout, 'alice\talice@example.test,billing@example.test\nbob\n');
      assert.ok(!list.stdout.includes('$argon2'), 'list never prints hashes');

      const cases: Array<{ args: string[]; stdin?: string; code: number; err: RegExp }> = [
        { args: ['user', 'add', 'alice', '--password-stdin', '--users', file], stdin: 'x', code: 1, err: /alice already exists/ },
        { args: ['user', 'add', 'carol', '--users', file], code: 2, err: /standard input is not a terminal: pass the password with --password-stdin/ },
        { args: ['user', 'add', 'carol', '--password-stdin', '--users', file], stdin: '\n', code: 2, err: /the password is empty/ },
        { args: ['user', 'add', 'bad:name', '--password-stdin', '--users', file], stdin: 'x', code: 2, err: /"bad:name" is not a user name/ },
        { args: ['user', 'add', 'carol', '--sender', 'nobody', '--password-stdin', '--users', file], stdin: 'x', code: 2, err: /--sender "nobody" is not an address/ },
        { args: ['user', 'remove', 'zed', '--users', file], code: 1, err: /no user zed in / },
        { args: ['user', 'list', '--users', join(dir, 'missing')], code: 1, err: /no user file at / },
        { args: ['user', 'frob', '--users', file], code: 2, err: /unknown action "frob"/ },
        { args: ['user', 'list'], code: 2, err: /name the user file with --users FILE/ },
      ];
      for (const c of cases) {
        const r = await runPostwire(c.args, {}, 30_000, c.stdin === undefined ? {} : { stdin: c.stdin });
        assert.equal(r.code, c.code, `${c.args.join(' ')}: ${described(r)}`);
        assert.match(r.stderr, c.err, c.args.join(' '));
      }

      const remove = await runPostwire(['user', 'remove', 'bob', '--users', file]);
      assert.equal(remove.code, 0, described(remove));
      assert.equal((await runPostwire(['user', 'list', '--users', file])).stdout, 'alice\talice@example.test,billing@example.test\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('on a terminal, asks for the password twice without echoing it', { skip: hasScript() ? false : 'util-linux script is not installed' }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-user-tty-'));
    const file = join(dir, 'users');
    try {
      // util-linux `script` gives the command a pseudo-terminal; what we type goes through it.
      const child = spawn('script', ['-qfec', `${process.execPath} ${BIN} user add tty --users ${file}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const typeAfter = async (prompt: RegExp, text: string): Promise<void> => {
        for (let i = 0; i < 500 && !prompt.test(out); i++) await new Promise((r) => setTimeout(r, 20));
        child.stdin.write(text);
      };
      await typeAfter(/Password: /, 'typed secret\r');
      await typeAfter(/Password again: /, 'typed secret\r');
      assert.equal(await exited, 0, out);
      assert.ok(!out.includes('typed secret'), `the password is not echoed: ${JSON.stringify(out)}`);
      const line = (await readFile(file, 'utf8')).split('\n').find((l) => l.startsWith('tty:')) ?? '';
      assert.ok(await verify(line.split(':')[1] ?? '', 'typed secret'), 'the stored hash verifies the typed password');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('serve --users authenticates a user the CLI added; an unusable user file or certificate is exit 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-user-serve-'));
    const file = join(dir, 'users');
    try {
      assert.equal((await runPostwire(['user', 'add', 'dave', '--password-stdin', '--users', file], {}, 30_000, { stdin: 'dave pw' })).code, 0);
      const serve = await startServe(['--spool', join(dir, 'spool'), '--users', file, '--auth-without-tls', 'loopback', '--auth-failure-delay', '0s']);
      try {
        const client = await RawClient.connect(serve.port);
        await client.reply();
        assert.match((await client.command('EHLO client.test')).text, /AUTH PLAIN LOGIN/);
        assert.equal((await client.command(`AUTH PLAIN ${plain('dave', 'wrong')}`)).code, 535);
        assert.equal((await client.command(`AUTH PLAIN ${plain('dave', 'dave pw')}`)).code, 235);
        client.close();
      } finally {
        serve.kill('SIGTERM');
        await serve.exited;
      }
      const missing = await runPostwire(['serve', '--listen', '127.0.0.1:0', '--admin', 'off', '--spool', join(dir, 'spool2'), '--users', join(dir, 'nope')]);
      assert.equal(missing.code, 2, described(missing));
      assert.match(missing.stderr, /^postwire: --users: .*nope: cannot read the user file: .*ENOENT.*\(create it with: postwire user add NAME --users /m);
      await writeFile(join(dir, 'cert.pem'), 'not a certificate');
      await writeFile(join(dir, 'key.pem'), 'not a key');
      const badCert = await runPostwire(['serve', '--listen', '127.0.0.1:0', '--admin', 'off', '--spool', join(dir, 'spool3'), '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
      assert.equal(badCert.code, 2, described(badCert));
      assert.match(badCert.stderr, /^postwire: --tls-cert .*cert\.pem \/ --tls-key .*key\.pem: /m);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
