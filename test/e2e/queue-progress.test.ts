/**
 * Bulk work through `postwire queue` (runCli in-process against a real server's admin API):
 * a filter matching more messages than one batch is worked through batch by batch, with progress
 * on stderr when stderr is a terminal, and none when it is not; --json then carries every result.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../../src/cli/index.js';
import type { CliIo } from '../../src/cli/index.js';
import type { ActionResultV1 } from '../../src/api/index.js';
import { patternBytes, sampleEnvelope, writeAndCommit } from '../../src/queue/conformance.js';
import { startTestServer } from '../support/server.js';

function capture(tty: boolean) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), env: {}, hostname: 'mx.example.test', stderrIsTTY: tty };
  return { io, out: () => out.join(''), err: () => err.join('') };
}

test('a bulk hold of 250 messages goes in batches, with progress only on a terminal', { timeout: 60_000 }, async () => {
  const server = await startTestServer(['--admin', '127.0.0.1:0']);
  try {
    const admin = `127.0.0.1:${server.server.admin?.port ?? 0}`;
    for (let i = 0; i < 250; i++) await writeAndCommit(server.store, patternBytes(10, i), sampleEnvelope({ sender: 'bulk@src.test' }));
    const tty = capture(true);
    assert.equal(await runCli(['queue', 'hold', '--sender', 'bulk@', '--yes', '--admin', admin], tty.io), 0, tty.err());
    assert.match(tty.err(), /\rhold: 100\/250\rhold: 200\/250\rhold: 250\/250\n$/);
    assert.match(tty.out(), /hold: 250 matched, 250 changed, 0 unchanged\n$/);
    const pipe = capture(false);
    assert.equal(await runCli(['queue', 'release', '--sender', 'bulk@', '--yes', '--admin', admin, '--json'], pipe.io), 0, pipe.err());
    assert.equal(pipe.err(), '', 'no progress when stderr is not a terminal');
    const result = JSON.parse(pipe.out()) as ActionResultV1;
    assert.equal(result.matched, 250);
    assert.equal(result.results.filter((r) => r.changed).length, 250);
    assert.deepEqual(await server.store.countByState(), { deferred: 250 });
  } finally {
    await server.stop();
  }
});
