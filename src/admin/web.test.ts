import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AdminApiV1 } from '../api/index.js';
import { silentLogger } from '../obs/index.js';
import type { Metrics } from '../obs/index.js';
import { startAdminServer } from './server.js';
import type { AdminServer } from './server.js';
import { CONTENT_SECURITY_POLICY, loadWebFiles, WEB_DIR } from './web.js';

const metrics: Metrics = {
  messageAccepted() {},
  recipientOutcome() {},
  limitRefused() {},
  tarpitDelayed() {},
  dkimMessage() {},
  rateWait() {},
  render: async () => '',
  contentType: 'text/plain',
  close() {},
};

/** These tests never reach the API. */
const unused = new Proxy({} as AdminApiV1, { get: () => () => Promise.reject(new Error('not used here')) });

/** A raw request, so the path goes out exactly as written (no URL normalisation). */
function get(port: number, path: string, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('admin web page files', () => {
  let admin: AdminServer;
  before(async () => {
    const web = await loadWebFiles();
    admin = await startAdminServer({ host: '127.0.0.1', port: 0 }, { metrics, log: silentLogger, api: unused, web: web.serve });
  });
  after(() => admin.close());

  it('serves the page and its assets from the build, with their types and a strict CSP', async () => {
    const page = await get(admin.address.port, '/');
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(page.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
    assert.match(CONTENT_SECURITY_POLICY, /default-src 'none'/);
    assert.match(CONTENT_SECURITY_POLICY, /script-src 'self'(;|$)/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.match(page.body, /<script type="module" src="\/web\/app\.js"><\/script>/);
    for (const [path, type] of [['/web/app.js', 'text/javascript; charset=utf-8'], ['/web/style.css', 'text/css; charset=utf-8'], ['/web/index.html', 'text/html; charset=utf-8']]) {
      const res = await get(admin.address.port, path as string);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['content-type'], type, path);
      assert.equal(res.headers['content-security-policy'], CONTENT_SECURITY_POLICY, path);
    }
    const head = await get(admin.address.port, '/web/app.js', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('answers nothing outside the web folder, however the path is spelled', async () => {
    for (const path of [
      '/web/../server.js', '/web/..%2fserver.js', '/web/%2e%2e/web.js', '/web/../../../../etc/passwd', '/web/', '/web',
      '/web/app.js/', '/web//app.js', '/web/APP.JS', '/web/./app.js', '/web/app.js%00.css', '/index.html', '/app.js', '/../package.json',
    ]) {
      const res = await get(admin.address.port, path);
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(res.body, /import |root:/, path);
    }
    assert.equal((await get(admin.address.port, '/', 'POST')).status, 405);
  });

  it('the query string does not change which file is served', async () => {
    const res = await get(admin.address.port, '/web/style.css?v=../../x');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/css; charset=utf-8');
  });

  it('serves only known file types, and says how to fix a missing build', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'postwire-web-files-'));
    try {
      await writeFile(join(dir, 'index.html'), '<!doctype html>');
      await writeFile(join(dir, 'notes.txt'), 'secret');
      await mkdir(join(dir, 'sub.js'));
      const files = await loadWebFiles(dir);
      assert.deepEqual(files.names, ['index.html']);
      const missing = await loadWebFiles(join(dir, 'nope'));
      assert.deepEqual(missing.names, []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    assert.ok((await loadWebFiles(WEB_DIR)).names.includes('app.js'), 'npm run build copied the web folder');
  });
});
