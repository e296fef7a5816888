/**
 * @module config/routes
 * The `routes` key of the --config file: an ordered list, like a connector's address space, of
 * domain pattern → next hop, each with its own concurrency, retry schedule and TLS policy:
 *
 *   "routes": [
 *     { "pattern": "example.com",     "smarthost": "relay.example.net:587", "concurrency": 5 },
 *     { "pattern": "*.example.org",   "mx": true, "retry": "30s,2m,10m", "rate": "600/m", "burst": 20 },
 *     { "pattern": "*",               "smarthost": "127.0.0.1:2626" }
 *   ]
 *
 * Routes are structured, so they live only in the file (no flag or POSTWIRE_* form);
 * `--smarthost` stays the one-route shorthand for `*`. Pattern syntax and precedence (exact,
 * then the longest `*.suffix`, then `*`) are checked again by delivery's RouteTable.
 * TLS: `tls` is none, may, encrypt or verify (delivery/tls-policy). Client AUTH to a smart host:
 * `auth_user` and `auth_password_file` together; the file must be readable and non-empty now
 * (a config error at start, not a deferral at delivery), and only its path is kept: the
 * password is read by delivery at each connection and never lands in Config, check-config or logs.
 * Rate: `rate` (config/rate.ts syntax; "unlimited" lifts --destination-rate for this route) and
 * `burst` (needs `rate`) limit how many deliveries start per minute to the route's destination.
 * Every error names the file, the route's index and the field.
 */
import { readFileSync } from 'node:fs';
import type { RouteSetting } from './types.js';
import { parseHostPort } from './parse.js';
import { parseDuration } from '../util/index.js';
import { MAX_BURST, parseRate, rateLimit } from './rate.js';

const FIELDS = new Set(['pattern', 'smarthost', 'mx', 'concurrency', 'retry', 'tls', 'auth_user', 'auth_password_file', 'rate', 'burst']);
/** `*`, `example.com`, `*.example.com` (trailing dot allowed; U-labels allowed). */
const PATTERN = /^(?:\*|(?:\*\.)?(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.)*[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?\.?)$/u;
const TLS = ['none', 'may', 'encrypt', 'verify'] as const;
type Tls = (typeof TLS)[number];

/**
 * `key` is how the file spells the list (`routes` in JSON, `route` for TOML's `[[route]]`);
 * `lines[i]`, when known, is the line where route i starts.
 */
export function parseRoutes(path: string, value: unknown, errors: string[], key = 'routes', lines: readonly number[] = []): RouteSetting[] | undefined {
  if (!Array.isArray(value)) {
    errors.push(key === 'route'
      ? `${path}: key "route" must be [[route]] tables, e.g. [[route]] pattern = "*" smarthost = "relay.example.net:25"`
      : `${path}: key "routes" must be a list of routes, e.g. [{"pattern": "*", "smarthost": "relay.example.net:25"}]`);
    return undefined;
  }
  const out: RouteSetting[] = [];
  const seen = new Map<string, number>();
  value.forEach((item: unknown, i) => {
    const line = lines[i];
    const route = parseRoute(`${path}${line === undefined ? '' : `:${line}`}: ${key}[${i}]`, item, errors);
    if (!route) return;
    const normal = route.pattern.toLowerCase().replace(/\.$/, '');
    const first = seen.get(normal);
    if (first !== undefined) errors.push(`${path}: ${key}[${i}]: the same pattern as ${key}[${first}] ("${route.pattern}")`);
    else seen.set(normal, i);
    out.push(route);
  });
  return out;
}

function parseRoute(where: string, item: unknown, errors: string[]): RouteSetting | undefined {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) {
    errors.push(`${where}: must be an object with "pattern" and "smarthost" or "mx"`);
    return undefined;
  }
  const fields = item as Record<string, unknown>;
  const before = errors.length;
  for (const key of Object.keys(fields)) {
    if (!FIELDS.has(key)) errors.push(`${where}: field ${JSON.stringify(key)} is unknown (known: ${[...FIELDS].join(', ')})`);
  }
  const pattern = fields['pattern'];
  if (typeof pattern !== 'string' || !PATTERN.test(pattern)) {
    errors.push(`${where}: "pattern" must be a domain ("example.com"), its subdomains ("*.example.com") or "*", got ${JSON.stringify(pattern)}`);
  }
  const nextHop = parseNextHop(where, fields, errors);
  const concurrency = fields['concurrency'];
  if (concurrency !== undefined && (!Number.isInteger(concurrency) || (concurrency as number) < 1 || (concurrency as number) > 10_000)) {
    errors.push(`${where}: "concurrency" must be a whole number 1..10000`);
  }
  const retry = parseRetry(where, fields['retry'], errors);
  const rate = parseRouteRate(where, fields['rate'], fields['burst'], errors);
  const tls = TLS.find((t) => t === fields['tls']);
  if (fields['tls'] !== undefined && tls === undefined) errors.push(`${where}: "tls" must be one of ${TLS.join(', ')}, got ${JSON.stringify(fields['tls'])}`);
  const auth = parseAuth(where, fields, nextHop, errors);
  if (errors.length > before || typeof pattern !== 'string' || nextHop === undefined) return undefined;
  return {
    pattern,
    nextHop,
    ...(typeof concurrency === 'number' ? { concurrency } : {}),
    ...(retry ? { retry } : {}),
    ...(tls !== undefined ? { tls: tls satisfies Tls } : {}),
    ...(auth !== undefined ? { auth } : {}),
    ...(rate !== undefined ? { rate } : {}),
  };
}

/** `auth_user` + `auth_password_file`, both or neither, smart hosts only; the file is checked, not kept. */
function parseAuth(where: string, fields: Record<string, unknown>, nextHop: RouteSetting['nextHop'] | undefined, errors: string[]): RouteSetting['auth'] {
  const user = fields['auth_user'];
  const file = fields['auth_password_file'];
  if (user === undefined && file === undefined) return undefined;
  if (typeof user !== 'string' || user === '' || /[\x00-\x1f]/.test(user)) {
    errors.push(`${where}: "auth_user" must be a non-empty user name (with "auth_password_file")`);
    return undefined;
  }
  if (typeof file !== 'string' || file === '') {
    errors.push(`${where}: "auth_password_file" must name the file holding the password for "auth_user"`);
    return undefined;
  }
  if (nextHop !== undefined && nextHop.kind !== 'smarthost') {
    errors.push(`${where}: "auth_user" needs a "smarthost" route (AUTH is for relaying through a provider, not for MX delivery)`);
    return undefined;
  }
  try {
    if (readFileSync(file, 'utf8').replace(/\r?\n$/, '') === '') errors.push(`${where}: "auth_password_file": ${file} is empty`);
  } catch (err) {
    errors.push(`${where}: "auth_password_file": ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return { user, passwordFile: file };
}

function parseRouteRate(where: string, value: unknown, burst: unknown, errors: string[]): RouteSetting['rate'] {
  if (burst !== undefined && (!Number.isInteger(burst) || (burst as number) < 1 || (burst as number) > MAX_BURST)) {
    errors.push(`${where}: "burst" must be a whole number 1..${MAX_BURST} (messages that may start at once)`);
    return undefined;
  }
  if (value === undefined) {
    if (burst !== undefined) errors.push(`${where}: "burst" needs a "rate" on the same route, e.g. rate = "600/m"`);
    return undefined;
  }
  const parsed = parseRate(value);
  if (!parsed.ok) {
    errors.push(`${where}: "rate": ${parsed.reason}`);
    return undefined;
  }
  if (parsed.perMinute === 'unlimited') {
    if (burst !== undefined) errors.push(`${where}: "burst" means nothing with rate "unlimited"`);
    return 'unlimited';
  }
  return rateLimit(parsed.perMinute, burst as number | undefined);
}

function parseNextHop(where: string, fields: Record<string, unknown>, errors: string[]): RouteSetting['nextHop'] | undefined {
  const smarthost = fields['smarthost'];
  const mx = fields['mx'];
  if (smarthost !== undefined && mx !== undefined) {
    errors.push(`${where}: give "smarthost" or "mx", not both`);
    return undefined;
  }
  if (smarthost !== undefined) {
    if (typeof smarthost !== 'string') {
      errors.push(`${where}: "smarthost" must be "HOST:PORT"`);
      return undefined;
    }
    const hp = parseHostPort(smarthost, { portZero: false, ipOnly: false });
    if (!hp.ok) {
      errors.push(`${where}: "smarthost": ${hp.reason}`);
      return undefined;
    }
    return { kind: 'smarthost', host: hp.value.host, port: hp.value.port };
  }
  if (mx === true) return { kind: 'mx' };
  errors.push(`${where}: needs a next hop: "smarthost": "HOST:PORT" or "mx": true`);
  return undefined;
}

function parseRetry(where: string, value: unknown, errors: string[]): number[] | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') {
    errors.push(`${where}: "retry" must be a list of durations like "1m,5m,1h"`);
    return undefined;
  }
  const delays: number[] = [];
  for (const part of value.split(',')) {
    const d = parseDuration(part.trim());
    if (!d.ok) errors.push(`${where}: "retry": ${d.reason}`);
    else if (d.value < 100) errors.push(`${where}: "retry": ${part.trim()} is shorter than 100ms`);
    else delays.push(d.value);
  }
  return delays.length > 0 ? delays : undefined;
}
