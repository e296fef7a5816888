/**
 * `postwire migrate` and `postwire serve --queue` as an operator sees them (the real binary):
 * serve refuses a schema that was never migrated, exit 1, with a message that says to run
 * `postwire migrate`; migrate creates it (exit 0) and a second run says it is up to date;
 * migrate without --queue is a usage error (exit 2); then serve starts on the migrated schema.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { BIN, startServe } from '../support/process.js';
import { PG_URL, dropSchema, testSchemaName } from '../support/pg.js';
import { PG_SCHEMA_VERSION } from '../../src/queue/postgres/index.js';

function postwire(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`postwire ${args.join(' ')} hung\n${stdout}\n${stderr}`));
    }, 30_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

it('serve refuses an unmigrated schema and names the fix; migrate creates it, idempotently', { timeout: 90_000 }, async () => {
  const schema = testSchemaName();
  try {
    const refused = await postwire(['serve', '--listen', '127.0.0.1:0', '--admin', 'off', '--queue', PG_URL, '--queue-schema', schema]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`schema ${schema} has no Postwire tables.*run \`postwire migrate --queue URL\` first`));
    const usage = await postwire(['migrate']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--queue postgres:\/\/\.\.\. is required/);
    const first = await postwire(['migrate', '--queue', PG_URL, '--queue-schema', schema]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`^schema ${schema}: version 0 -> ${PG_SCHEMA_VERSION}, applied 1 \\(.*\\), 2 \\(destination rate buckets\\)`));
    const again = await postwire(['migrate', '--queue', PG_URL, '--queue-schema', schema]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, new RegExp(`version ${PG_SCHEMA_VERSION} -> ${PG_SCHEMA_VERSION}, already up to date`));
    const node = await startServe(['--queue', PG_URL, '--queue-schema', schema, '--node-name', `${schema}-n0`]);
    node.kill('SIGTERM');
    assert.equal(await node.exited, 0);
  } finally {
    await dropSchema(schema);
  }
});
