/**
 * @module admin/web
 * The web page's static files (admin/web/: index.html, app.js, style.css), served by the admin
 * server: GET / is the page, GET /web/<name> its assets. Plain files, no build step: `npm run
 * build` copies the folder next to the compiled code (scripts/copy-web.mjs), and this module
 * reads it once at startup from beside itself, so it works from dist/ on a fresh clone.
 *
 * What it trusts: nothing from the request path. The files are read once into a map keyed by
 * their bare names, and a request is answered only when its path is exactly '/' or '/web/' plus
 * one of those names, so no path can reach outside the folder (no '..', no encoding tricks, no
 * symlinks followed at request time). Every answer carries its content type, a strict
 * Content-Security-Policy (scripts, styles and API calls from this origin only; no inline script,
 * no frames, no forms posting elsewhere), nosniff, no-referrer and no-cache.
 *
 * Failure: a missing folder (dist/ built without the copy step) is not fatal: the admin server
 * still serves the API and /metrics, and GET / answers 503 saying how to fix it.
 */
import { readdir, readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_DIR = fileURLToPath(new URL('./web/', import.meta.url));

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-cache',
} as const;

interface WebFile {
  readonly body: Buffer;
  readonly type: string;
}

export interface WebFiles {
  /** Answers GET/HEAD for the page and its assets; false when the path is not one of them. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean;
  /** The same as the admin server's `web` hook: the raw path (not URL-normalised); resolves true when it answered. */
  readonly serve: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
  /** The file names served (for logs and tests). */
  readonly names: readonly string[];
}

/** Read the web folder once. Missing or unreadable: a WebFiles that answers 503 for the page. */
export async function loadWebFiles(dir: string = WEB_DIR): Promise<WebFiles> {
  const files = new Map<string, WebFile>();
  let problem: string | undefined;
  try {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const type = TYPES[extname(entry.name)];
      if (!entry.isFile() || type === undefined) continue;
      files.set(entry.name, { body: await readFile(`${dir}/${entry.name}`), type });
    }
    if (!files.has('index.html')) problem = `${dir} has no index.html`;
  } catch (err) {
    problem = `${dir}: ${err instanceof Error ? err.message : String(err)}`;
  }
  const handle: WebFiles['handle'] = (req, res, path) => {
    const name = path === '/' ? 'index.html' : path.startsWith('/web/') ? path.slice('/web/'.length) : undefined;
    if (name === undefined || (path !== '/' && !files.has(name))) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'METHOD_NOT_ALLOWED', message: `${req.method ?? ''} ${path}: only GET and HEAD` } }));
      return true;
    }
    const file = files.get(name);
    if (file === undefined) {
      res.writeHead(503, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      res.end(`The web page is not installed (${problem ?? 'no files'}). Run \`npm run build\`, which copies src/admin/web to dist.\n`);
      return true;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': file.type, 'content-length': file.body.byteLength });
    res.end(req.method === 'HEAD' ? undefined : file.body);
    return true;
  };
  return {
    names: [...files.keys()].sort(),
    handle,
    serve: async (req, res) => handle(req, res, (req.url ?? '/').split('?')[0] ?? '/'),
  };
}
