/**
 * @module delivery/resolver
 * The DNS seam of delivery: three lookups (MX, A, AAAA) behind the `Resolver` interface, and the
 * one production implementation on node:dns/promises (c-ares). Routing (mx.ts, route.ts) only
 * ever sees this interface, so tests inject a resolver pointed at test/fakes/fake-dns.ts.
 *
 * Who calls it: main.ts builds one (createDnsResolver({ server: config.dns })) for the RouteTable.
 *
 * Failure behaviour: every lookup either resolves with at least one record or rejects with a
 * ResolveError whose `code` is the only thing callers branch on:
 *   DNS_NOTFOUND  the name does not exist (NXDOMAIN), or is not a valid DNS name: permanent
 *   DNS_NODATA    the name exists but has no record of that type (NOERROR, empty answer)
 *   DNS_TEMPFAIL  anything else (SERVFAIL, timeout, refused, unreachable server, bad response):
 *                 the answer is unknown, so delivery must defer, never bounce
 * The node error code (`ENOTFOUND`, `ETIMEOUT`…) and the query are kept on the error as context.
 *
 * Trust: the configured server is trusted to be a resolver (recursive) — Postwire does no DNSSEC
 * validation and follows CNAMEs as c-ares does. Queries use `resolve*` (res_query: no search
 * list, no /etc/hosts), so `--dns` fully decides what a name means.
 */
import { Resolver as NodeResolver } from 'node:dns/promises';
import { isIPv4, isIPv6 } from 'node:net';
import type { HostPort } from '../config/index.js';

/** An MX record as node returns it; `exchange` '' (or '.') is the root: a null MX (RFC 7505). */
export interface MxRecord {
  readonly exchange: string;
  readonly priority: number;
}

/**
 * The lookups routing needs. Each resolves with a non-empty list or rejects with ResolveError;
 * an implementation that resolves with [] is read as DNS_NODATA by the callers.
 */
export interface Resolver {
  resolveMx(domain: string): Promise<MxRecord[]>;
  resolve4(host: string): Promise<string[]>;
  resolve6(host: string): Promise<string[]>;
  /**
   * TXT records, each as its character-strings (join them for the record's text). Optional so a
   * resolver for routing alone need not have it; without it, MTA-STS is not looked up.
   */
  resolveTxt?(name: string): Promise<string[][]>;
}

export type ResolveErrorCode = 'DNS_NOTFOUND' | 'DNS_NODATA' | 'DNS_TEMPFAIL';
export type QueryType = 'MX' | 'A' | 'AAAA' | 'TXT';

/** A failed lookup. `permanent` is true for NOTFOUND and NODATA: the zone said so. */
export class ResolveError extends Error {
  override readonly name = 'ResolveError';
  readonly permanent: boolean;
  constructor(
    readonly code: ResolveErrorCode,
    readonly type: QueryType,
    readonly query: string,
    /** The underlying resolver's code (`ENOTFOUND`, `ESERVFAIL`, `ETIMEOUT`, …), for logs. */
    readonly detail: string,
  ) {
    super(`${type} ${query}: ${DESCRIPTION[code]} (${detail})`);
    this.permanent = code !== 'DNS_TEMPFAIL';
  }
}

const DESCRIPTION: Record<ResolveErrorCode, string> = {
  DNS_NOTFOUND: 'no such domain',
  DNS_NODATA: 'no record of this type',
  DNS_TEMPFAIL: 'temporary DNS failure',
};

/**
 * c-ares codes → ours. NXDOMAIN is ENOTFOUND; a name c-ares refuses to even send (EBADNAME) will
 * never exist either. Everything not listed, including codes a future node adds, is TEMPFAIL:
 * an unknown failure must defer mail, not bounce it.
 */
const NODE_CODES: ReadonlyMap<string, ResolveErrorCode> = new Map([
  ['ENOTFOUND', 'DNS_NOTFOUND'],
  ['EBADNAME', 'DNS_NOTFOUND'],
  ['ENODATA', 'DNS_NODATA'],
  ['ESERVFAIL', 'DNS_TEMPFAIL'],
  ['ETIMEOUT', 'DNS_TEMPFAIL'],
  ['ECONNREFUSED', 'DNS_TEMPFAIL'],
  ['EREFUSED', 'DNS_TEMPFAIL'],
  ['EFORMERR', 'DNS_TEMPFAIL'],
  ['ENOTIMP', 'DNS_TEMPFAIL'],
  ['EBADRESP', 'DNS_TEMPFAIL'],
  ['ECANCELLED', 'DNS_TEMPFAIL'],
  ['EOF', 'DNS_TEMPFAIL'],
]);

/** Maps any rejection from node's resolver to a ResolveError (exported for tests). */
export function toResolveError(err: unknown, type: QueryType, query: string): ResolveError {
  if (err instanceof ResolveError) return err;
  const detail =
    typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : String(err);
  // A Map, not an object literal: a code such as 'toString' must not find Object.prototype.
  return new ResolveError(NODE_CODES.get(detail) ?? 'DNS_TEMPFAIL', type, query, detail);
}

/** Per-try timeout (c-ares lengthens it on retries); glibc's RES_TIMEOUT is also 5 s. */
export const DNS_DEFAULT_TIMEOUT_MS = 5000;
/** Tries per server (c-ares's own default is 4; two keeps a dead resolver from stalling a run). */
export const DNS_DEFAULT_TRIES = 2;

export interface DnsResolverOptions {
  /** `--dns`: this server only. Absent: the system's (/etc/resolv.conf). */
  readonly server?: HostPort | undefined;
  readonly timeoutMs?: number;
  readonly tries?: number;
}

/** The `--dns` server was not an IP address and port c-ares can use (setServers takes no names). */
export class DnsServerError extends Error {
  override readonly name = 'DnsServerError';
  readonly code = 'DNS_BAD_SERVER';
}

/** The c-ares server string: `127.0.0.1:5353`, `[::1]:5353`. */
export function formatDnsServer(server: HostPort): string {
  if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535) {
    throw new DnsServerError(`--dns port ${server.port} is not 1-65535`);
  }
  if (isIPv4(server.host)) return `${server.host}:${server.port}`;
  if (isIPv6(server.host)) return `[${server.host}]:${server.port}`;
  throw new DnsServerError(`--dns host '${server.host}' is not an IP address (a DNS server cannot be found by name)`);
}

/** A Resolver on node:dns/promises. Throws DnsServerError for an unusable `server`. */
export function createDnsResolver(options: DnsResolverOptions = {}): Resolver {
  const node = new NodeResolver({
    timeout: options.timeoutMs ?? DNS_DEFAULT_TIMEOUT_MS,
    tries: options.tries ?? DNS_DEFAULT_TRIES,
  });
  if (options.server !== undefined) node.setServers([formatDnsServer(options.server)]);
  const wrap =
    <T>(type: QueryType, run: (name: string) => Promise<T[]>) =>
    async (name: string): Promise<T[]> => {
      let out: T[];
      try {
        out = await run(name);
      } catch (err) {
        throw toResolveError(err, type, name);
      }
      if (out.length === 0) throw new ResolveError('DNS_NODATA', type, name, 'empty answer');
      return out;
    };
  return {
    resolveMx: wrap('MX', (name) => node.resolveMx(name)),
    resolve4: wrap('A', (name) => node.resolve4(name)),
    resolve6: wrap('AAAA', (name) => node.resolve6(name)),
    resolveTxt: wrap('TXT', (name) => node.resolveTxt(name)),
  };
}
