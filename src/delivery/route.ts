/**
 * @module delivery/route
 * Where mail for a domain goes: routes like a connector's address space, each a pattern
 * (`example.com`, `*.example.com`, `*`) → a next hop (smart host or MX) with its own concurrency,
 * retry schedule and TLS policy; then the ordered addresses to try.
 *
 * Matching: the most specific pattern wins: an exact domain, else the longest wildcard suffix
 * (`*.b.example.com` before `*.example.com`; wildcards match proper subdomains only, as in DNS),
 * else `*`, else an implicit `*` → MX. `--smarthost` is the shorthand `*` → smart host.
 *
 * Who calls it: qmgr groups recipients by `destination` (the per-destination window key,
 * `mx:example.com` / `smarthost:relay.example:587`); the connector walks `hosts` in order;
 * `postwire explain` prints `explain`. main.ts builds the RouteTable from the config.
 *
 * Failure behaviour: construction throws RouteConfigError listing every bad route (validateRoutes
 * gives the same list without throwing, for the config layer). resolveRoute never throws: DNS and
 * input problems come back as `{ ok: false, permanent, status, code, reason }` (see mx.ts).
 *
 * Trust: domains come from parsed envelopes; normalised here (case, trailing dot, IDNA), 5.1.3 if bad.
 */
import { domainToASCII } from 'node:url';
import { isIPv6 } from 'node:net';
import type { HostPort, RateLimit } from '../config/index.js';
import { formatRate } from '../config/index.js';
import type { Resolver } from './resolver.js';
import {
  DEFAULT_ADDRESS_ORDER,
  MAX_ADDRESSES,
  MAX_MX_HOSTS,
  MX_PORT,
  ADDRESS_ORDERS,
  parseDomainLiteral,
  resolveDomainHosts,
  resolveNamedHost,
  type AddressOrder,
  type HostLookupOptions,
  type HostsFailure,
  type PortFor,
  type RouteHost,
} from './mx.js';

import { TLS_POLICIES } from './tls-policy.js';
import type { TlsPolicy } from './tls-policy.js';

export { TLS_POLICIES };
export type { TlsPolicy };

/** Client AUTH to a smart host (PLAIN or LOGIN, only ever over TLS). The password stays in its file until used. */
export interface RouteAuth {
  readonly user: string;
  /** Read at each connection, so a corrected password applies without a reload. */
  readonly passwordFile: string;
}

export type NextHop =
  | { readonly kind: 'smarthost'; readonly host: string; readonly port: number }
  | { readonly kind: 'mx' };

/** One configured route. Unset fields mean "the global setting" (qmgr applies those). */
export interface RouteConfig {
  /** `example.com` (that domain), `*.example.com` (its subdomains, any depth) or `*`. */
  readonly pattern: string;
  readonly nextHop: NextHop;
  /** Simultaneous connections to this destination. */
  readonly concurrency?: number;
  /** Retry delays in ms; the last repeats (as --retry). */
  readonly retry?: readonly number[];
  readonly tls?: TlsPolicy;
  readonly auth?: RouteAuth;
  /** Deliveries started per minute to this destination (qmgr's rate gate); 'unlimited' lifts the global default. */
  readonly rate?: RateLimit | 'unlimited';
}

/** The route that matched, with `pattern` normalised and where it came from. */
export interface RouteInfo extends RouteConfig {
  /** Index in the configured list, or 'default' for the implicit `*` → MX route. */
  readonly origin: number | 'default';
}

export interface RouteSuccess {
  readonly ok: true;
  /** The per-destination window key: `mx:<domain>` or `smarthost:<host>:<port>`. */
  readonly destination: string;
  /** Addresses in the order to try them; never empty. */
  readonly hosts: readonly RouteHost[];
  readonly route: RouteInfo;
  readonly explain: readonly string[];
}

export interface RouteFailure extends HostsFailure {
  /** Absent when the domain was refused before any route was matched. */
  readonly route: RouteInfo | undefined;
  readonly explain: readonly string[];
}

export type RouteResult = RouteSuccess | RouteFailure;

export interface RouteTableOptions {
  readonly resolver: Resolver;
  /** Uniform in [0, 1) (default Math.random): the order among equal MX preferences. */
  readonly random?: () => number;
  /**
   * Port for MX and address-literal delivery: MX_PORT (25) in production. Tests give a number, or
   * a function of (MX host name, address), to reach sinks listening on port 0.
   */
  readonly mxPort?: number | PortFor;
  readonly maxMxHosts?: number;
  readonly maxAddresses?: number;
  readonly addressOrder?: AddressOrder;
}

/** The config had bad routes; `problems` names each (`routes[2] '*.x': …`). */
export class RouteConfigError extends Error {
  override readonly name = 'RouteConfigError';
  readonly code = 'ROUTE_CONFIG';
  constructor(readonly problems: readonly string[]) {
    super(`bad route configuration:\n  ${problems.join('\n  ')}`);
  }
}

/** `--smarthost HOST:PORT` as a route: everything goes there. */
export function smarthostRoute(smarthost: HostPort): RouteConfig {
  return { pattern: '*', nextHop: { kind: 'smarthost', host: smarthost.host, port: smarthost.port } };
}

/**
 * The routes with `--smarthost` applied: it replaces the catch-all `*` route (or is added as one);
 * the configured domain routes still win for their domains, as a command-line flag overrides the
 * file's default without discarding its exceptions.
 */
export function withSmarthost(routes: readonly RouteConfig[], smarthost: HostPort | undefined): RouteConfig[] {
  if (smarthost === undefined) return [...routes];
  return [...routes.filter((r) => r.pattern.trim() !== '*'), smarthostRoute(smarthost)];
}

/** A domain as DNS asks for it: lower case, A-labels, no trailing dot; or why it is not one. */
export function normalizeDomain(domain: string): { ok: true; domain: string } | { ok: false; reason: string } {
  const literal = parseDomainLiteral(domain);
  if (literal !== undefined) {
    return literal.ok ? { ok: true, domain: canonicalLiteral(domain, literal.address) } : literal;
  }
  const bare = domain.endsWith('.') ? domain.slice(0, -1) : domain;
  // Only non-ASCII names go through IDNA: WHATWG's domainToASCII would also turn `0x7f.1` into
  // `127.0.0.1`, and an ASCII name must reach DNS as written.
  const ascii = /^[\x00-\x7f]*$/.test(bare) ? bare.toLowerCase() : domainToASCII(bare);
  if (ascii === '' || ascii.length > 253) return { ok: false, reason: `'${domain}' is not a domain name` };
  const labels = ascii.split('.');
  if (!labels.every((l) => LABEL.test(l))) return { ok: false, reason: `'${domain}' is not a domain name` };
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) {
    return { ok: false, reason: `'${domain}' looks like an address; literals are written [192.0.2.1]` };
  }
  return { ok: true, domain: ascii };
}

/** Letters, digits, hyphens inside; underscores are tolerated (seen in real host names). */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function canonicalLiteral(text: string, address: string): string {
  return /^\[ipv6:/i.test(text) ? `[IPv6:${address.toLowerCase()}]` : `[${address}]`;
}

type Pattern = { kind: 'exact'; domain: string } | { kind: 'wildcard'; suffix: string } | { kind: 'any' };

function parsePattern(pattern: string): Pattern | string {
  const p = pattern.trim();
  if (p === '*') return { kind: 'any' };
  const wild = p.startsWith('*.');
  const rest = wild ? p.slice(2) : p;
  if (rest.includes('*')) return `pattern '${pattern}': '*' only as '*' or a leading '*.'`;
  if (rest.startsWith('[')) return `pattern '${pattern}': address literals are routed by '*' only`;
  const n = normalizeDomain(rest);
  if (!n.ok) return `pattern '${pattern}': ${n.reason}`;
  return wild ? { kind: 'wildcard', suffix: n.domain } : { kind: 'exact', domain: n.domain };
}

function patternText(p: Pattern): string {
  return p.kind === 'any' ? '*' : p.kind === 'exact' ? p.domain : `*.${p.suffix}`;
}

/** Every problem in `routes`, each naming its entry; [] when the table is usable. */
export function validateRoutes(routes: readonly RouteConfig[]): string[] {
  const problems: string[] = [];
  const firstAt = new Map<string, number>();
  routes.forEach((route, i) => {
    const where = `routes[${i}] '${route.pattern}'`;
    const p = parsePattern(route.pattern);
    if (typeof p === 'string') problems.push(`routes[${i}]: ${p}`);
    else {
      const key = patternText(p);
      const first = firstAt.get(key);
      if (first !== undefined) problems.push(`${where}: the same pattern as routes[${first}]`);
      else firstAt.set(key, i);
    }
    const hop = route.nextHop;
    if (hop.kind === 'smarthost') {
      if (hop.host === '' || /[\s[\]/]/.test(hop.host)) problems.push(`${where}: smart host '${hop.host}' is not a host name or address`);
      else if (hop.host.includes(':') && !isIPv6(hop.host)) problems.push(`${where}: smart host '${hop.host}' is not an IPv6 address`);
      if (!Number.isInteger(hop.port) || hop.port < 1 || hop.port > 65535) problems.push(`${where}: port ${hop.port} is not 1-65535`);
    } else if (hop.kind !== 'mx') {
      problems.push(`${where}: next hop kind must be 'smarthost' or 'mx'`);
    }
    if (route.concurrency !== undefined && !(Number.isInteger(route.concurrency) && route.concurrency >= 1)) {
      problems.push(`${where}: concurrency ${route.concurrency} is not a positive integer`);
    }
    if (route.retry !== undefined && (route.retry.length === 0 || !route.retry.every((d) => Number.isFinite(d) && d > 0))) {
      problems.push(`${where}: retry must be a non-empty list of positive delays`);
    }
    const rate = route.rate;
    if (rate !== undefined && rate !== 'unlimited' && !(rate.perMinute > 0 && Number.isFinite(rate.perMinute) && Number.isInteger(rate.burst) && rate.burst >= 1)) {
      problems.push(`${where}: rate must be a positive rate per minute with a whole burst of at least 1`);
    }
    if (route.tls !== undefined && !TLS_POLICIES.includes(route.tls)) {
      problems.push(`${where}: tls '${route.tls}' is not one of ${TLS_POLICIES.join(', ')}`);
    }
  });
  return problems;
}

const IMPLICIT_DEFAULT: RouteInfo = Object.freeze({ pattern: '*', nextHop: Object.freeze({ kind: 'mx' as const }), origin: 'default' as const });

/** An immutable route table plus the DNS machinery to turn a match into addresses. */
export class RouteTable {
  readonly #exact = new Map<string, RouteInfo>();
  readonly #wildcard = new Map<string, RouteInfo>();
  readonly #any: RouteInfo;
  readonly #lookup: HostLookupOptions;

  constructor(routes: readonly RouteConfig[], options: RouteTableOptions) {
    const problems = validateRoutes(routes);
    const positive = (n: number | undefined, name: string): void => {
      if (n !== undefined && !(Number.isInteger(n) && n >= 1)) problems.push(`${name} ${n} is not a positive integer`);
    };
    positive(options.maxMxHosts, 'maxMxHosts');
    positive(options.maxAddresses, 'maxAddresses');
    if (typeof options.mxPort === 'number') positive(options.mxPort, 'mxPort');
    if (options.addressOrder !== undefined && !ADDRESS_ORDERS.includes(options.addressOrder)) problems.push(`addressOrder '${options.addressOrder}' is unknown`);
    if (problems.length > 0) throw new RouteConfigError(problems);

    let any: RouteInfo | undefined;
    routes.forEach((route, origin) => {
      const p = parsePattern(route.pattern);
      if (typeof p === 'string') return; // unreachable: validated above
      const info: RouteInfo = Object.freeze({ ...route, pattern: patternText(p), origin });
      if (p.kind === 'exact') this.#exact.set(p.domain, info);
      else if (p.kind === 'wildcard') this.#wildcard.set(p.suffix, info);
      else any = info;
    });
    this.#any = any ?? IMPLICIT_DEFAULT;
    const mxPort = options.mxPort ?? MX_PORT;
    this.#lookup = {
      resolver: options.resolver,
      random: options.random ?? Math.random,
      mxPort: typeof mxPort === 'number' ? () => mxPort : mxPort,
      maxMxHosts: options.maxMxHosts ?? MAX_MX_HOSTS,
      maxAddresses: options.maxAddresses ?? MAX_ADDRESSES,
      addressOrder: options.addressOrder ?? DEFAULT_ADDRESS_ORDER,
    };
  }

  /**
   * The most specific route for a normalised domain (see normalizeDomain): exact, then each
   * parent suffix from the longest down, then `*`. Pure; O(labels).
   */
  match(domain: string): RouteInfo {
    const exact = this.#exact.get(domain);
    if (exact !== undefined) return exact;
    if (!domain.startsWith('[')) {
      for (let dot = domain.indexOf('.'); dot >= 0; dot = domain.indexOf('.', dot + 1)) {
        const hit = this.#wildcard.get(domain.slice(dot + 1));
        if (hit !== undefined) return hit;
      }
    }
    return this.#any;
  }

  /** The next hop and the ordered addresses for mail to `domain`, with the decision path. */
  async resolveRoute(domain: string): Promise<RouteResult> {
    const explain: string[] = [];
    const n = normalizeDomain(domain);
    if (!n.ok) {
      explain.push(`domain '${domain}': refused, ${n.reason}`);
      return { ok: false, permanent: true, status: '5.1.3', code: 'ROUTE_BAD_DOMAIN', reason: n.reason, route: undefined, explain };
    }
    const name = n.domain;
    explain.push(name === domain ? `domain ${name}` : `domain ${domain} → ${name}`);
    const route = this.match(name);
    const hop = route.nextHop;
    const hopText = hop.kind === 'mx' ? 'MX lookup' : `smart host ${formatHost(hop.host)}:${hop.port}`;
    const extras = [
      route.concurrency !== undefined ? `concurrency ${route.concurrency}` : '',
      route.retry !== undefined ? `retry ${route.retry.join(',')} ms` : '',
      route.tls !== undefined ? `tls ${route.tls}` : '',
      route.auth !== undefined ? `AUTH as ${route.auth.user} (over TLS only)` : '',
      route.rate !== undefined ? `rate ${route.rate === 'unlimited' ? 'unlimited' : formatRate(route.rate)}` : '',
    ].filter((x) => x !== '');
    explain.push(
      `route '${route.pattern}' (${route.origin === 'default' ? 'implicit default' : `routes[${route.origin}]`}) → ${hopText}` +
        (extras.length > 0 ? `; ${extras.join(', ')}` : ''),
    );

    const result =
      hop.kind === 'mx'
        ? await resolveDomainHosts(name, this.#lookup, explain)
        : await resolveNamedHost(hop.host, hop.port, this.#lookup, explain);
    if (!result.ok) {
      explain.push(`${result.permanent ? 'bounce' : 'defer'} ${result.status} ${result.code}: ${result.reason}`);
      return { ...result, route, explain };
    }
    result.hosts.forEach((h, i) =>
      explain.push(`host ${i + 1}: ${h.name} ${formatHost(h.address)}:${h.port}${hop.kind === 'mx' ? ` (preference ${h.preference})` : ''}`),
    );
    const destination = hop.kind === 'mx' ? `mx:${name}` : `smarthost:${formatHost(hop.host.toLowerCase())}:${hop.port}`;
    return { ok: true, destination, hosts: result.hosts, route, explain };
  }
}

/** `[2001:db8::1]` for IPv6 so a host:port string is unambiguous. */
function formatHost(host: string): string {
  return isIPv6(host) ? `[${host}]` : host;
}
