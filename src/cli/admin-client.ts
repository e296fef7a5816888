/**
 * @module cli/admin-client
 * AdminApiV1 over HTTP (fetch): what `postwire queue` and `postwire explain` use against a
 * running server (`--admin HOST:PORT`, default the configured --admin address). Each method is
 * one request to its ROUTES_V1 entry; GET fields go in the query string, POST fields in a JSON
 * body; the token (--admin-token / POSTWIRE_ADMIN_TOKEN) goes in `Authorization: Bearer`.
 *
 * Errors: an error body from the server is rethrown as the ApiErrorV1 it describes (same code,
 * message, field), so the CLI treats online and offline failures alike; a server that cannot be
 * reached, times out (REQUEST_TIMEOUT_MS) or answers something that is not the API is an Error
 * that says where it tried and what to do instead.
 */
import { API_V1_PREFIX, ApiErrorV1, ERROR_STATUS_V1, ROUTES_V1 } from '../api/index.js';
import type { AdminApiV1, ApiErrorBodyV1, ApiErrorCodeV1 } from '../api/index.js';

export const REQUEST_TIMEOUT_MS = 60_000;

export function httpAdminApi(base: string, token: string | undefined): AdminApiV1 {
  const request = async <T>(route: keyof AdminApiV1, query: object | undefined, body?: object, id?: string): Promise<T> => {
    const spec = ROUTES_V1[route];
    const path = spec.path.replace(':id', encodeURIComponent(id ?? ''));
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    const url = `${base}${API_V1_PREFIX}${path}${qs === '' ? '' : `?${qs}`}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: spec.method,
        headers: {
          accept: 'application/json',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
      throw new Error(`cannot reach the admin API at ${base}: ${cause} (is postwire serve running with --admin there? offline: --spool DIR)`);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`${base} answered ${res.status} with something that is not the admin API (${JSON.stringify(text.slice(0, 80))})`);
    }
    if (res.ok) return parsed as T;
    const error = (parsed as Partial<ApiErrorBodyV1>).error;
    if (error !== undefined && typeof error.code === 'string' && error.code in ERROR_STATUS_V1) {
      throw new ApiErrorV1(error.code as ApiErrorCodeV1, String(error.message), error.field);
    }
    throw new Error(`${base} answered ${res.status}: ${text.slice(0, 200)}`);
  };
  return {
    list: (req) => request('list', req),
    show: (id) => request('show', undefined, undefined, id),
    act: (req) => request('act', undefined, req),
    explain: (req) => request('explain', req),
    overview: () => request('overview', undefined),
    timeseries: () => request('timeseries', undefined),
  };
}
