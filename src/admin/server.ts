/**
 * @module admin/server
 * The admin HTTP listener (`--admin HOST:PORT`, default 127.0.0.1:8025, or `off`). For now it
 * serves GET /metrics (Prometheus text format); the versioned JSON API under /api/v1 and the web
 * page arrive with the operations issue, and until then every other path is a 404 with a stable
 * error code. Bound to loopback by default: nothing here needs a token yet because nothing here
 * can change the queue.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { API_V1_PREFIX, ApiErrorV1, ERROR_STATUS_V1 } from '../api/index.js';
import type { AdminApiV1 } from '../api/index.js';
import type { HostPort } from '../config/index.js';
import type { Logger, Metrics } from '../obs/index.js';
import { loadWebFiles } from './web.js';

export interface AdminServer {
  readonly address: HostPort;
  close(): Promise<void>;
}

export interface AdminDeps {
  readonly metrics: Metrics;
  readonly log: Logger;
  /** The web page's two reads (overview, timeseries); the rest of AdminApiV1 comes with the API router. */
  readonly api?: Pick<AdminApiV1, 'overview' | 'timeseries'>;
}

export async function startAdminServer(at: HostPort, deps: AdminDeps): Promise<AdminServer> {
  const web = await loadWebFiles();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // The web page (GET /, /web/*), then its two reads: GET /api/v1/overview and /api/v1/timeseries.
    if (web.handle(req, res, path)) return;
    const read = path === `${API_V1_PREFIX}/overview` ? deps.api?.overview : path === `${API_V1_PREFIX}/timeseries` ? deps.api?.timeseries : undefined;
    if (req.method === 'GET' && read !== undefined) {
      read().then(
        (body) => {
          res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end(JSON.stringify(body));
        },
        (err: unknown) => {
          const e = err instanceof ApiErrorV1 ? err : new ApiErrorV1('INTERNAL', 'internal error');
          if (!(err instanceof ApiErrorV1)) deps.log.error({ err: String(err), path }, 'admin read failed');
          res.writeHead(ERROR_STATUS_V1[e.code], { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: e.code, message: e.message } }));
        },
      );
      return;
    }
    if (req.method === 'GET' && path === '/metrics') {
      deps.metrics.render().then(
        (text) => {
          res.writeHead(200, { 'content-type': deps.metrics.contentType });
          res.end(text);
        },
        (err: unknown) => {
          deps.log.error({ err: String(err) }, 'metrics render failed');
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'METRICS_FAILED', message: 'could not collect metrics' } }));
        },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: `${req.method ?? 'GET'} ${path} is not served (this version serves GET /metrics)` } }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const address = bound && typeof bound === 'object' ? { host: bound.address, port: bound.port } : at;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
