/**
 * `postwire queue` and `postwire explain` in-process: the usage errors that must exit 2 before
 * anything is contacted (the real binary against real servers and spools is in test/e2e).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, type CliIo } from './index.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), env: {}, hostname: 'mx.example.test' };
  return { io, out: () => out.join(''), err: () => err.join('') };
}

test('queue and explain: usage on --help (exit 0) and with no arguments (exit 2)', async () => {
  for (const argv of [['queue', '--help'], ['queue', 'list', '--help'], ['explain', '-h']]) {
    const c = capture();
    assert.equal(await runCli(argv, c.io), 0, argv.join(' '));
    assert.match(c.out(), /^Usage: postwire (queue|explain)/);
  }
  for (const argv of [['queue'], ['explain']]) {
    const c = capture();
    assert.equal(await runCli(argv, c.io), 2, argv.join(' '));
    assert.match(c.err(), /^Usage: postwire/);
  }
});

test('queue: command-line mistakes exit 2 and name the problem, before any connection', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['queue', 'frob'], /unknown queue command "frob"/],
    [['queue', 'list', '--bogus'], /unknown flag --bogus/],
    [['queue', 'list', 'SOMEID'], /list takes filters, not ids/],
    [['queue', 'show'], /show takes exactly one ID/],
    [['queue', 'hold'], /give an ID or a filter/],
    [['queue', 'hold', '01AAAAAAAAAAAAAAAA', '--sender', 'x'], /IDs or filters, not both/],
    [['queue', 'bounce', '01AAAAAAAAAAAAAAAA'], /bounce needs --reason/],
    [['queue', 'retry', '--older-than', 'soon'], /--older-than "soon"/],
    [['queue', 'list', '--sort', 'random'], /--sort must be one of/],
    [['queue', 'list', '--limit', 'ten'], /--limit "ten" is not a number/],
    [['queue', 'hold', '--state', 'held', '--limit', '5'], /--limit is for "queue list"/],
    [['queue', 'list', '--admin', 'off'], /--admin is off/],
    [['queue', 'list', '--admin', 'nonsense'], /--admin/],
    [['explain', 'a@b.example', 'c@d.example'], /exactly one ADDRESS or queue ID/],
  ];
  for (const [argv, expected] of cases) {
    const c = capture();
    assert.equal(await runCli(argv, c.io), 2, `${argv.join(' ')}: ${c.err()}`);
    assert.match(c.err(), expected, argv.join(' '));
    assert.equal(c.out(), '');
  }
});

test('queue: an unreachable server is a runtime failure (exit 1) that says where it tried', async () => {
  const c = capture();
  assert.equal(await runCli(['queue', 'list', '--admin', '127.0.0.1:1'], c.io), 1);
  assert.match(c.err(), /cannot reach the admin API at http:\/\/127\.0\.0\.1:1/);
});
