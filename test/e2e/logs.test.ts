/**
 * The log as an operator meets it, from the real binary: in a terminal (a pseudo-TTY made by
 * util-linux `script`) `--log-format auto` prints one readable line per event; through a pipe
 * every line is one JSON object with the ids (session, queueId) that tie events together.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, startServe } from '../support/process.js';
import { RawClient } from '../support/raw-client.js';
import { until } from '../support/wait.js';

async function submitOne(port: number): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await c.reply();
    await c.command('EHLO client.test');
    await c.command('MAIL FROM:<a@client.test>');
    await c.command('RCPT TO:<b@dest.test>');
    await c.command('DATA');
    await c.write('Subject: log\r\n\r\nhello\r\n.\r\n');
    const r = await c.reply();
    assert.equal(r.code, 250);
    await c.command('QUIT');
    return /queued as (\S+)/.exec(r.text)?.[1] ?? '';
  } finally {
    c.close();
  }
}

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('logs', () => {
  it('are pretty in a terminal: one readable line per event, ids first', { skip: hasScript() ? false : 'util-linux script is not installed' }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-logs-'));
    const transcript = join(dir, 'tty.txt');
    const cmd = [process.execPath, BIN, 'serve', '--listen', '127.0.0.1:0', '--spool', join(dir, 'spool'), '--hostname', 'mx.postwire.test', '--delivery', 'off', '--admin', 'off']
      .map((a) => `'${a}'`).join(' ');
    // `exec`: the node process is script's child, so the test signals it by its own pid.
    const script = spawn('script', ['-qfec', `exec ${cmd}`, transcript], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    script.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => script.once('exit', (code) => resolve(code)));
    let child = 0;
    try {
      const port = Number((await until('listening', () => /listening on 127\.0\.0\.1:(\d+)/.exec(out) ?? undefined))[1]);
      // The serve process itself (script's child, thanks to exec): signalled by its own pid, and
      // killed in `finally` too, since closing the pty would only send it SIGHUP (a reload).
      child = Number((await readFile(`/proc/${script.pid}/task/${script.pid}/children`, 'utf8')).trim().split(/\s+/)[0]);
      assert.ok(child > 0, 'the serve process is found');
      const id = await submitOne(port);
      await until('the queued line', () => out.includes(id) || undefined);
      const lines = out.replaceAll('\r', '').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('postwire:'));
      assert.ok(lines.length >= 3, out);
      for (const line of lines) assert.ok(!line.trimStart().startsWith('{'), `not JSON in a terminal: ${line}`);
      const plain = (l: string): string => l.replace(/\x1b\[[0-9;]*m/g, '');
      assert.ok(lines.some((l) => /^\d\d:\d\d:\d\d\.\d{3} INFO {2}smtpd ready {2}listeners=/.test(plain(l))), out);
      const queued = lines.map(plain).find((l) => / INFO {2}queued {2}/.test(l));
      assert.ok(queued, out);
      assert.match(queued, new RegExp(`queued {2}queueId=${id} session=\\S+ client=127\\.0\\.0\\.1 .*from=a@client\\.test rcpts=1 size=\\d+`));
      assert.ok(lines.some((l) => l.includes('\x1b[32mINFO')), 'levels are coloured on a terminal');
      process.kill(child, 'SIGTERM');
      assert.equal(await exited, 0);
      assert.match(await readFile(transcript, 'utf8'), /INFO/);
    } finally {
      if (child > 0) {
        try {
          process.kill(child, 'SIGKILL');
        } catch {
          // already gone: the normal case
        }
      }
      script.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('are JSON through a pipe: every line parses, with the ids that tie events together', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-logs-'));
    const lines: string[] = [];
    const serve = await startServe(['--spool', join(dir, 'spool'), '--log-level', 'debug'], { onStdoutLine: (l) => lines.push(l) });
    try {
      const id = await submitOne(serve.port);
      await until('the session ends', () => lines.some((l) => l.includes('"disconnect"')) || undefined);
      serve.kill('SIGTERM');
      assert.equal(await serve.exited, 0);
      assert.ok(lines.length >= 5);
      const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const e of events) {
        assert.equal(typeof e['time'], 'string');
        assert.equal(typeof e['level'], 'number');
        assert.equal(typeof e['msg'], 'string');
        assert.equal(e['service'], 'postwire');
      }
      const queued = events.find((e) => e['msg'] === 'queued');
      assert.equal(queued?.['queueId'], id);
      const session = queued?.['session'];
      assert.equal(typeof session, 'string');
      assert.deepEqual(events.filter((e) => e['session'] === session).map((e) => e['msg']), ['connect', 'queued', 'disconnect']);
    } finally {
      serve.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
