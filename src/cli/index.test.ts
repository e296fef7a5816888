/**
 * @module cli/index.test
 * runCli in-process with a captured CliIo: exit codes and output of help, no command, unknown
 * and unbuilt commands, check-config, and serve's configuration errors (which return before the
 * server module is loaded, so these tests start nothing).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SCHEMA } from '../config/index.js';
import { runCli, type CliIo } from './index.js';

function capture(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), env, hostname: 'mx.example.test' };
  return { io, out: () => out.join(''), err: () => err.join('') };
}

test('no command: usage on stderr, exit 2', async () => {
  const c = capture();
  assert.equal(await runCli([], c.io), 2);
  assert.equal(c.out(), '');
  assert.match(c.err(), /^Usage: postwire <command>/);
});

test('help, --help, -h: usage on stdout listing commands and every flag, exit 0', async () => {
  for (const argv of [['help'], ['--help'], ['-h'], ['serve', '--help'], ['check-config', '-h']]) {
    const c = capture();
    assert.equal(await runCli(argv, c.io), 0, argv.join(' '));
    assert.equal(c.err(), '');
    const text = c.out();
    for (const cmd of ['serve', 'check-config', 'help', 'queue', 'explain', 'send', 'user', 'migrate']) {
      assert.match(text, new RegExp(`^  ${cmd} `, 'm'), cmd);
    }
    for (const s of SCHEMA) assert.match(text, new RegExp(`^  ${s.flag} ${s.metavar.replace(/[|.]/g, '\\$&')} `, 'm'), s.flag);
    assert.match(text, /--listen HOST:PORT .*\(default 127\.0\.0\.1:2525; repeatable\)/);
    assert.match(text, /--max-message-size SIZE .*\(default 50MiB\)/);
    assert.match(text, /--tls-cert FILE .*re-read on SIGHUP/);
    assert.doesNotMatch(text, /not available yet/, 'every designed setting and command is built');
  }
});

test('unknown command: exit 2, named, with a suggestion when close', async () => {
  const c = capture();
  assert.equal(await runCli(['frob'], c.io), 2);
  assert.match(c.err(), /^postwire: unknown command "frob"\n/);
  const d = capture();
  assert.equal(await runCli(['serv'], d.io), 2);
  assert.match(d.err(), /^postwire: unknown command "serv" \(did you mean "serve"\?\)\n/);
  assert.equal(d.out(), '');
});

test('user: usage errors exit 2 and name what to fix', async () => {
  const c = capture();
  assert.equal(await runCli(['user', 'list', '--json'], c.io), 2);
  assert.match(c.err(), /^postwire user: Unknown option '--json'/);
  const d = capture();
  assert.equal(await runCli(['user', 'list'], d.io), 2);
  assert.match(d.err(), /^postwire user: name the user file with --users FILE \(or POSTWIRE_USERS\)\n/);
  assert.equal(d.out(), '');
});

test('check-config prints the effective configuration and exits 0', async () => {
  const c = capture({ POSTWIRE_MAX_RECIPIENTS: '77' });
  assert.equal(await runCli(['check-config', '--listen', '[::1]:2525', '--data-timeout', '90s'], c.io), 0);
  assert.equal(c.err(), '');
  const lines = c.out().trimEnd().split('\n');
  assert.ok(lines.includes('listen = [::1]:2525'));
  assert.ok(lines.includes('max-recipients = 77'), 'the environment comes from io.env');
  assert.ok(lines.includes('data-timeout = 1m30s'));
  assert.ok(lines.includes('hostname = mx.example.test'));
});

test('check-config with bad settings: every error on stderr, prefixed, exit 2', async () => {
  const c = capture({ POSTWIRE_SPOOL: ' ' });
  assert.equal(await runCli(['check-config', '--max-recipients', 'abc', '--bogus', '--tls-cert', 'x.pem'], c.io), 2);
  assert.equal(c.out(), '');
  assert.deepEqual(c.err().trimEnd().split('\n'), [
    'postwire: --bogus: unknown flag',
    'postwire: POSTWIRE_SPOOL: is empty (expected DIR)',
    'postwire: --max-recipients: "abc" is not a whole number (expected 1..100000)',
  ]);
});

test('serve with bad flags: exit 2 with the messages, nothing started', async () => {
  const c = capture();
  assert.equal(await runCli(['serve', '--listen', 'localhost', '--max-age', '5'], c.io), 2);
  assert.equal(c.out(), '');
  const lines = c.err().trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0] ?? '', /^postwire: --listen: "localhost" is not HOST:PORT \(the port is missing/);
  assert.equal(lines[1], 'postwire: --max-age: "5" has no unit (write 5ms, 5s, 5m, ...)');
  const d = capture({ POSTWIRE_SUBMISSION: '127.0.0.1:0' });
  assert.equal(await runCli(['serve'], d.io), 2);
  assert.equal(d.err(), 'postwire: POSTWIRE_SUBMISSION: the implicit-TLS listener needs --tls-cert and --tls-key\n');
});
