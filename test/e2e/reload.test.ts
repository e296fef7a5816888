/**
 * SIGHUP on the real `postwire serve` process with a TOML config file: the file is rewritten and
 * the process signalled while an SMTP session is open. The open session keeps working with the
 * limit it started with, a new session sees the new limit, a setting that needs a restart is
 * logged as such, and a bad file changes nothing while every error is logged.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServe } from '../support/process.js';
import { RawClient } from '../support/raw-client.js';
import { until } from '../support/wait.js';

interface LogLine {
  readonly msg?: string;
  readonly [key: string]: unknown;
}

async function session(port: number): Promise<{ client: RawClient; ehlo: string }> {
  const client = await RawClient.connect(port);
  await client.reply();
  const ehlo = await client.command('EHLO client.test');
  assert.equal(ehlo.code, 250);
  return { client, ehlo: ehlo.text };
}

/** MAIL, RCPT, DATA with a body of `octets` octets; the reply to end-of-data. */
async function send(client: RawClient, octets: number): Promise<number> {
  assert.equal((await client.command('MAIL FROM:<a@client.test>')).code, 250);
  assert.equal((await client.command('RCPT TO:<b@dest.test>')).code, 250);
  assert.equal((await client.command('DATA')).code, 354);
  const line = `${'x'.repeat(98)}\r\n`;
  await client.write(`Subject: size\r\n\r\n${line.repeat(Math.ceil(octets / line.length))}.\r\n`);
  return (await client.reply()).code;
}

describe('SIGHUP reload', () => {
  it('keeps open sessions, gives new sessions the new limits, and keeps the running config when the file is bad', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-reload-'));
    const file = join(dir, 'postwire.toml');
    await writeFile(file, `spool = "${join(dir, 'spool')}"\nmax-message-size = 4000\n`);
    const logs: LogLine[] = [];
    const serve = await startServe(['--config', file], {
      onStdoutLine: (line) => {
        if (line.startsWith('{')) logs.push(JSON.parse(line) as LogLine);
      },
    });
    try {
      const open = await session(serve.port);
      assert.match(open.ehlo, /SIZE 4000/);

      // Live: the size limit. Restart: the spool (named in the log, not applied).
      await writeFile(file, `spool = "${join(dir, 'elsewhere')}"\nmax-message-size = 2000\nretry = "2m,1h"\n`);
      serve.kill('SIGHUP');
      const reloaded = await until('config reloaded', () => logs.find((l) => l.msg === 'config reloaded'));
      assert.deepEqual(reloaded['live'], ['retry', 'max-message-size']);
      assert.deepEqual(reloaded['restartNeeded'], ['spool']);
      assert.ok(logs.some((l) => l.msg === 'config reload: this setting changes only at a restart' && l['setting'] === 'spool'));

      assert.equal(await send(open.client, 3000), 250, 'the open session keeps the limit it started with');
      const fresh = await session(serve.port);
      assert.match(fresh.ehlo, /SIZE 2000/);
      assert.equal(await send(fresh.client, 3000), 552, 'a new session sees the new limit');
      fresh.client.close();

      // A bad file: every error logged with the file, the line and the key; nothing changes.
      await writeFile(file, `max-message-size = "lots"\nmax-recipents = 5\n`);
      serve.kill('SIGHUP');
      await until('reload refused', () => logs.find((l) => l.msg === 'config reload refused: the running configuration stays'));
      const errors = logs.filter((l) => l.msg === 'config reload: error').map((l) => String(l['error']));
      assert.deepEqual(errors.sort(), [
        `${file}:1: key "max-message-size": "lots" is not a size (expected octets, or a number with K, M, G, KiB, MiB or GiB, e.g. 50MiB)`,
        `${file}:2: key "max-recipents" is unknown (did you mean "max-recipients"?)`,
      ].sort());
      const after = await session(serve.port);
      assert.match(after.ehlo, /SIZE 2000/, 'the running configuration stays');
      after.client.close();

      assert.equal(await send(open.client, 100), 250, 'the first session is still served');
      assert.equal((await open.client.command('QUIT')).code, 221);
      open.client.close();
      assert.match(serve.output(), /SIGHUP: configuration reloaded/);
      serve.kill('SIGTERM');
      assert.equal(await serve.exited, 0);
    } finally {
      serve.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
