/**
 * The abuse limits in the real `postwire serve` process, configured from a TOML file: a message
 * over the per-IP rate gets 451 4.7.1 and one `limit refused` log line; SIGHUP applies a new rate
 * live (turning it off lets the client through), and a reload never resets what a client has
 * already spent (turning the rate back on refuses it again at once).
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

describe('abuse limits in postwire serve', () => {
  it('refuses over the rate with 451 4.7.1 and a log line, and SIGHUP changes the rate without resetting what was spent', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-limits-'));
    const file = join(dir, 'postwire.toml');
    // 127.0.0.1 is exempt by default; an empty list makes the test client subject to the rates.
    const config = (rate: number): string => `spool = "${join(dir, 'spool')}"\nlimits-exempt = []\nip-message-rate = ${rate}\nrate-window = "1h"\n`;
    await writeFile(file, config(1));
    const logs: LogLine[] = [];
    const serve = await startServe(['--config', file], {
      onStdoutLine: (line) => {
        if (line.startsWith('{')) logs.push(JSON.parse(line) as LogLine);
      },
    });
    try {
      const client = await RawClient.connect(serve.port);
      assert.equal((await client.reply()).code, 220);
      assert.equal((await client.command('EHLO client.test')).code, 250);
      assert.equal((await client.command('MAIL FROM:<a@client.test>')).code, 250);
      assert.equal((await client.command('RSET')).code, 250);
      const refused = await client.command('MAIL FROM:<a@client.test>');
      assert.equal(refused.code, 451);
      assert.match(refused.text, /^4\.7\.1 Rate limit: at most 1 message per 1h from your address; try again in (1h|59m\d+s)$/);
      const line = await until('limit refused', () => logs.find((l) => l.msg === 'limit refused'));
      assert.equal(line['limit'], 'ip-messages');
      assert.equal(line['client'], '127.0.0.1');

      await writeFile(file, config(0));
      serve.kill('SIGHUP');
      const reloaded = await until('config reloaded', () => logs.find((l) => l.msg === 'config reloaded'));
      assert.deepEqual(reloaded['live'], ['ip-message-rate']);
      assert.equal((await client.command('MAIL FROM:<a@client.test>')).code, 250, 'rate 0: no limit, in the open session too');
      assert.equal((await client.command('RSET')).code, 250);

      await writeFile(file, config(5));
      serve.kill('SIGHUP');
      await until('second reload', () => logs.filter((l) => l.msg === 'config reloaded').length === 2 || undefined);
      assert.equal((await client.command('MAIL FROM:<a@client.test>')).code, 451, 'the spent allowance survived both reloads');
      assert.equal((await client.command('QUIT')).code, 221);
      client.close();
      serve.kill('SIGTERM');
      assert.equal(await serve.exited, 0);
    } finally {
      serve.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
