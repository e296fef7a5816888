/**
 * @module admin/server
 * The admin HTTP listener (`--admin HOST:PORT`, default 127.0.0.1:8025, or `off`), on node:http:
 *
 * - `/api/v1/…`: ROUTES_V1 mapped onto an AdminApiV1 object (admin/api). GET routes take their
 *   fields from the query string, POST routes a JSON body (at most MAX_BODY_BYTES); both are
 *   validated by admin/validate, which rejects unknown fields. Answers are JSON; errors are
 *   `{"error": {"code", "message", "field"?}}` with the status of ERROR_STATUS_V1. A path under
 *   the prefix that no route has is 404 NOT_FOUND; a known path with another method is 405
 *   METHOD_NOT_ALLOWED with an Allow header.
 * - `GET /metrics`: Prometheus text (obs/metrics), unauthenticated as before (read-only counts).
 * - anything else goes to `deps.web` (the web page's static files) when given, else 404.
 *
 * Token: with `token` set, every /api/v1 request must carry `Authorization: Bearer <token>`
 * (compared in constant time over SHA-256 digests, so neither content nor length leaks), else 401
 * UNAUTHORIZED before any routing (an unauthenticated caller learns nothing about the routes).
 * config/load refuses a non-loopback --admin without a token, so "no token" means loopback only;
 * then a request whose Host is a DNS name (not an address or localhost) is refused too, so a web
 * page whose name was made to resolve to 127.0.0.1 (DNS rebinding) cannot drive the API, and a
 * POST must say content-type application/json, which a cross-site form or simple fetch cannot.
 *
 * Failure: an exception that is not ApiErrorV1 is a bug: logged with the stack, answered 500
 * INTERNAL without details. A client that disconnects mid-request is simply dropped.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { isIP } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { API_V1_PREFIX, ApiErrorV1, ERROR_STATUS_V1, ROUTES_V1 } from '../api/index.js';
import type { AdminApiV1, ApiErrorBodyV1, ApiErrorCodeV1 } from '../api/index.js';
import type { HostPort } from '../config/index.js';
import type { Logger, Metrics } from '../obs/index.js';
import { checkNoFields } from './api.js';
import { ACTION_SCHEMA, EXPLAIN_SCHEMA, fromQuery, LIST_SCHEMA, NO_FIELDS } from './validate.js';
import type { Schema } from './validate.js';

/** Request bodies larger than this are refused (BAD_REQUEST) and the connection is closed. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface AdminServer {
  readonly address: HostPort;
  close(): Promise<void>;
}

export interface AdminServerDeps {
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly api: AdminApiV1;
  /** When set, /api/v1 requires `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Requests outside /api/v1 and /metrics (the web page): resolve true when answered. */
  readonly web?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
}

type Method = 'GET' | 'POST';

/** A body over MAX_BODY_BYTES: answered, then the connection is closed. */
class BodyTooLarge extends ApiErrorV1 {}

interface Route {
  readonly method: Method;
  /** Path segments under the prefix; ':name' matches one segment. */
  readonly segments: readonly string[];
  /** The query-string schema (GET) or body schema (POST). */
  readonly schema: Schema;
  readonly call: (api: AdminApiV1, input: Record<string, unknown>, params: Readonly<Record<string, string>>) => Promise<unknown>;
}

/** One handler per ROUTES_V1 entry, keyed by the AdminApiV1 method it calls: the compiler checks the table is complete. */
const HANDLERS: { readonly [K in keyof AdminApiV1]: Omit<Route, 'method' | 'segments'> } = {
  list: { schema: LIST_SCHEMA, call: (api, input) => api.list(input) },
  show: { schema: NO_FIELDS, call: (api, _input, params) => api.show(params.id ?? '') },
  act: { schema: ACTION_SCHEMA, call: (api, input) => api.act(input as unknown as Parameters<AdminApiV1['act']>[0]) },
  explain: { schema: EXPLAIN_SCHEMA, call: (api, input) => api.explain(input as unknown as Parameters<AdminApiV1['explain']>[0]) },
  overview: { schema: NO_FIELDS, call: (api, input) => (checkNoFields(input), api.overview()) },
  timeseries: { schema: NO_FIELDS, call: (api, input) => (checkNoFields(input), api.timeseries()) },
};

const ROUTES: readonly Route[] = (Object.keys(ROUTES_V1) as Array<keyof AdminApiV1>).map((name) => ({
  method: ROUTES_V1[name].method,
  segments: ROUTES_V1[name].path.split('/').filter((s) => s !== ''),
  ...HANDLERS[name],
}));

export async function startAdminServer(at: HostPort, deps: AdminServerDeps): Promise<AdminServer> {
  const expected = deps.token === undefined ? undefined : digest(deps.token);
  const server: Server = createServer((req, res) => {
    handle(req, res, deps, expected).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof BodyTooLarge) {
        // Stop reading: answer, then close the connection under the rest of the upload.
        res.setHeader('connection', 'close');
        res.once('finish', () => req.destroy());
      }
      if (err instanceof ApiErrorV1) {
        sendError(res, err);
        return;
      }
      deps.log.error({ err: err instanceof Error ? err.stack : String(err), url: req.url }, 'admin request failed');
      sendError(res, new ApiErrorV1('INTERNAL', 'internal error; see the server log'));
    });
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

async function handle(req: IncomingMessage, res: ServerResponse, deps: AdminServerDeps, token: Buffer | undefined): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin.invalid');
  const path = url.pathname;
  if (path === API_V1_PREFIX || path.startsWith(`${API_V1_PREFIX}/`)) {
    if (token !== undefined && !authorized(req, token)) {
      drain(req);
      res.setHeader('www-authenticate', 'Bearer realm="postwire admin"');
      throw new ApiErrorV1('UNAUTHORIZED', 'this admin API needs Authorization: Bearer <token> (--admin-token)');
    }
    if (token === undefined && !literalHost(req.headers.host)) {
      // Without a token only this machine can reach us, unless a web page's own name resolves
      // here (DNS rebinding): such a page sends its name as Host, which no local tool does.
      drain(req);
      throw new ApiErrorV1('UNAUTHORIZED', `Host ${JSON.stringify(req.headers.host ?? '')} is not an address or localhost: without --admin-token the API answers only requests made to an address`);
    }
    await handleApi(req, res, deps.api, url);
    return;
  }
  if (path === '/metrics') {
    if (req.method !== 'GET') {
      drain(req);
      res.setHeader('allow', 'GET');
      throw new ApiErrorV1('METHOD_NOT_ALLOWED', `${req.method ?? '?'} /metrics: only GET`);
    }
    try {
      const text = await deps.metrics.render();
      res.writeHead(200, { 'content-type': deps.metrics.contentType });
      res.end(text);
    } catch (err) {
      deps.log.error({ err: String(err) }, 'metrics render failed');
      sendError(res, new ApiErrorV1('INTERNAL', 'could not collect metrics'));
    }
    return;
  }
  if (deps.web !== undefined && (await deps.web(req, res))) return;
  drain(req);
  throw new ApiErrorV1('NOT_FOUND', `${req.method ?? 'GET'} ${path} is not served here (the API is under ${API_V1_PREFIX})`);
}

async function handleApi(req: IncomingMessage, res: ServerResponse, api: AdminApiV1, url: URL): Promise<void> {
  const segments = url.pathname.slice(API_V1_PREFIX.length).split('/').filter((s) => s !== '');
  const matching = ROUTES.flatMap((route) => {
    const params = match(route.segments, segments);
    return params === undefined ? [] : [{ route, params }];
  });
  if (matching.length === 0) {
    drain(req);
    throw new ApiErrorV1('NOT_FOUND', `no API route ${url.pathname} (see docs/admin-api.md)`);
  }
  const hit = matching.find((m) => m.route.method === req.method);
  if (hit === undefined) {
    drain(req);
    const allow = [...new Set(matching.map((m) => m.route.method))].join(', ');
    res.setHeader('allow', allow);
    throw new ApiErrorV1('METHOD_NOT_ALLOWED', `${req.method ?? '?'} ${url.pathname}: use ${allow}`);
  }
  const input = hit.route.method === 'GET' ? (drain(req), fromQuery(url.searchParams, hit.route.schema)) : await readJson(req, url);
  const result = await hit.route.call(api, input, hit.params);
  send(res, 200, result);
}

function match(pattern: readonly string[], path: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== path.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, p] of pattern.entries()) {
    const seg = path[i] ?? '';
    if (p.startsWith(':')) {
      try {
        params[p.slice(1)] = decodeURIComponent(seg);
      } catch {
        return undefined;
      }
    } else if (p !== seg) return undefined;
  }
  return params;
}

/** The JSON body of a POST, bounded; a query string on a POST is refused (fields go in the body). */
async function readJson(req: IncomingMessage, url: URL): Promise<Record<string, unknown>> {
  if ([...url.searchParams.keys()].length > 0) {
    drain(req);
    throw new ApiErrorV1('BAD_REQUEST', 'a POST takes its fields in the JSON body, not the query string', [...url.searchParams.keys()][0]);
  }
  // Required, not assumed: a browser sends a cross-site POST without a preflight only with no
  // content type or a form/text one, so insisting on JSON keeps other sites' pages out.
  const type = req.headers['content-type'];
  if (type === undefined || !/^application\/json\s*(;|$)/i.test(type)) {
    drain(req);
    throw new ApiErrorV1('BAD_REQUEST', `the body must be sent as content-type application/json${type === undefined ? '' : `, not ${type}`}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > MAX_BODY_BYTES) {
      req.pause();
      throw new BodyTooLarge('BAD_REQUEST', `the body is larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new ApiErrorV1('BAD_REQUEST', 'the body is empty: send a JSON object');
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ApiErrorV1('BAD_REQUEST', `the body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Let the request body go (we answer without reading it). */
function drain(req: IncomingMessage): void {
  req.resume();
}

/** `127.0.0.1:8025`, `[::1]:8025`, `localhost:8025`: a Host a local tool sends; a DNS name is not. */
function literalHost(host: string | undefined): boolean {
  if (host === undefined) return true; // HTTP/1.0 tools; browsers always send Host
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name.toLowerCase() === 'localhost' || isIP(name) !== 0;
}

function authorized(req: IncomingMessage, expected: Buffer): boolean {
  const header = req.headers.authorization ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  return timingSafeEqual(digest(m[1] ?? ''), expected);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, err: ApiErrorV1): void {
  const body: ApiErrorBodyV1 = { error: { code: err.code, message: err.message, ...(err.field === undefined ? {} : { field: err.field }) } };
  send(res, ERROR_STATUS_V1[err.code as ApiErrorCodeV1], body);
}
