import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createTestCa } from './test-ca.js';

test('a leaf from the test CA is trusted for its names and refused for another name or CA', async () => {
  const ca = await createTestCa();
  const leaf = await ca.issue(['mx.example.test', '127.0.0.1']);
  const server = createServer({ cert: leaf.cert, key: leaf.key }, (s) => s.end('hi'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const attempt = (servername: string, trust: string) => new Promise<string>((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername, ca: trust }, () => { s.end(); resolve('ok'); });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  try {
    assert.equal(await attempt('mx.example.test', ca.ca), 'ok');
    assert.equal(await attempt('other.example.test', ca.ca), 'ERR_TLS_CERT_ALTNAME_INVALID');
    const other = await createTestCa('Other CA');
    assert.equal(await attempt('mx.example.test', other.ca), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  } finally {
    server.close();
  }
});
