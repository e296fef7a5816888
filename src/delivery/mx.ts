/**
 * @module delivery/mx
 * A domain (or a smart host name) → the ordered list of addresses to try, per RFC 5321 §5.1:
 * MX records by preference with random order among equals, the domain's own A/AAAA as an implicit
 * MX when it has no MX records, RFC 7505 null MX, address literals (`[192.0.2.1]`,
 * `[IPv6:2001:db8::1]`) used as written, and caps on the hosts and addresses tried per attempt.
 *
 * Who calls it: route.ts, once per delivery attempt for an MX next hop (resolveDomainHosts) or a
 * smart host given by name (resolveNamedHost). DNS goes only through the injected Resolver and
 * randomness through an injected `random`, so every decision is reproducible in tests.
 *
 * Failure behaviour: never throws for DNS or input problems; returns a HostsFailure with an RFC
 * 3463 status and a stable code. Permanent only when the DNS said so authoritatively (NXDOMAIN
 * 5.1.2, null MX 5.1.10, a domain with neither MX nor address 5.4.4) or the domain cannot be a
 * domain (5.1.3); every temporary or partial failure defers (4.4.3), because a bounce is final
 * and a DNS hiccup is not. An MX host that does not resolve is skipped, not fatal.
 *
 * Trust: DNS answers are taken as given (no DNSSEC). Each step is appended to `explain`, the
 * decision path `postwire explain` prints.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ResolveError, type MxRecord, type Resolver, type ResolveErrorCode } from './resolver.js';

/** The SMTP port for MX delivery (RFC 5321 §4.5.4.2 says "port 25"). */
export const MX_PORT = 25;
/** MX hosts looked up per attempt, most preferred first: bounds the DNS work a domain can cause. */
export const MAX_MX_HOSTS = 5;
/** Addresses handed to the connector per attempt (Postfix smtp_mx_address_limit is 5; we allow
 * 10 so a dual-stack MX pair keeps both families of both hosts). */
export const MAX_ADDRESSES = 10;

/**
 * Which families to use, and which comes first for a host that has both. The default prefers
 * IPv4: many receivers hold IPv6 senders to stricter rules (PTR, SPF alignment), and a relay with
 * broken IPv6 routing would otherwise spend a connect timeout on every host. `*-only` is for
 * machines that have one family.
 */
export type AddressOrder = 'ipv4-first' | 'ipv6-first' | 'ipv4-only' | 'ipv6-only';
export const DEFAULT_ADDRESS_ORDER: AddressOrder = 'ipv4-first';
export const ADDRESS_ORDERS: readonly AddressOrder[] = ['ipv4-first', 'ipv6-first', 'ipv4-only', 'ipv6-only'];

/** One address to connect to. `name` is the MX host (or literal/smart host) for SNI and logs. */
export interface RouteHost {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** The MX preference; 0 for implicit MX, address literals and smart hosts. */
  readonly preference: number;
}

export type RouteFailureCode =
  | 'ROUTE_BAD_DOMAIN'
  | 'ROUTE_NO_SUCH_DOMAIN'
  | 'ROUTE_NULL_MX'
  | 'ROUTE_NO_ADDRESS'
  | 'ROUTE_DNS_TEMPFAIL'
  | 'ROUTE_NO_USABLE_HOST';

/** Why there is nowhere to deliver. `status` is the RFC 3463 code for the DSN / history. */
export interface HostsFailure {
  readonly ok: false;
  readonly permanent: boolean;
  readonly status: string;
  readonly code: RouteFailureCode;
  readonly reason: string;
}

export type HostsResult = { readonly ok: true; readonly hosts: readonly RouteHost[] } | HostsFailure;

/** The port to dial for an MX host (tests map names to sinks on port 0). */
export type PortFor = (name: string, address: string) => number;

export interface HostLookupOptions {
  readonly resolver: Resolver;
  /** Uniform in [0, 1), like Math.random; tests pass a seeded one. */
  readonly random: () => number;
  readonly mxPort: PortFor;
  readonly maxMxHosts: number;
  readonly maxAddresses: number;
  readonly addressOrder: AddressOrder;
}

function fail(code: RouteFailureCode, reason: string): HostsFailure {
  const [permanent, status] = STATUS[code];
  return { ok: false, permanent, status, code, reason };
}

/** One place for code → permanence and enhanced status. */
const STATUS: Record<RouteFailureCode, readonly [boolean, string]> = {
  ROUTE_BAD_DOMAIN: [true, '5.1.3'], // bad destination address syntax
  ROUTE_NO_SUCH_DOMAIN: [true, '5.1.2'], // bad destination system address
  ROUTE_NULL_MX: [true, '5.1.10'], // RFC 7505 §4.2
  ROUTE_NO_ADDRESS: [true, '5.4.4'], // unable to route (as Postfix for "no MX, no A")
  ROUTE_DNS_TEMPFAIL: [false, '4.4.3'], // directory server failure
  ROUTE_NO_USABLE_HOST: [false, '4.4.3'],
};

/**
 * `[192.0.2.1]` → 192.0.2.1, `[IPv6:2001:db8::1]` → 2001:db8::1 (RFC 5321 §4.1.3); not a literal
 * → undefined; a malformed or unsupported literal → `{ ok: false, reason }`.
 */
export function parseDomainLiteral(domain: string): { ok: true; address: string } | { ok: false; reason: string } | undefined {
  if (!domain.startsWith('[')) return undefined;
  const m = /^\[([^\]]*)\]$/.exec(domain);
  const inner = m?.[1];
  if (inner === undefined) return { ok: false, reason: `malformed address literal ${domain}` };
  if (/^ipv6:/i.test(inner)) {
    const v6 = inner.slice(5);
    return isIPv6(v6) && !v6.includes('%') ? { ok: true, address: v6 } : { ok: false, reason: `bad IPv6 literal ${domain}` };
  }
  if (isIPv4(inner)) return { ok: true, address: inner };
  return { ok: false, reason: `unsupported address literal ${domain} (IPv4 or IPv6: only)` };
}

/**
 * MX records ordered for delivery: ascending preference (RFC 5321 §5.1), and a fresh random order
 * within each preference (Fisher–Yates with `random`) so equal MX hosts share the load.
 */
export function orderMx(records: readonly MxRecord[], random: () => number): MxRecord[] {
  const sorted = [...records].sort((a, b) => a.priority - b.priority);
  for (let start = 0; start < sorted.length; ) {
    let end = start + 1;
    while (end < sorted.length && sorted[end]?.priority === sorted[start]?.priority) end++;
    for (let i = end - 1; i > start; i--) {
      const j = start + Math.floor(clampUnit(random()) * (i - start + 1));
      const a = sorted[i];
      const b = sorted[j];
      if (a !== undefined && b !== undefined) [sorted[i], sorted[j]] = [b, a];
    }
    start = end;
  }
  return sorted;
}

/** A random source that returns 1 (or NaN) must not index past the group. */
function clampUnit(x: number): number {
  return Number.isFinite(x) && x > 0 ? Math.min(x, 1 - Number.EPSILON) : 0;
}

function isRoot(exchange: string): boolean {
  return exchange === '' || exchange === '.';
}

/** What the A/AAAA lookups of one name produced. */
export interface AddressLookup {
  readonly addresses: readonly string[];
  /** Set when there are no addresses: the most hopeful failure (TEMPFAIL > NODATA > NOTFOUND). */
  readonly failure: ResolveErrorCode | undefined;
  /** `A 192.0.2.1; AAAA none (DNS_NODATA)` */
  readonly summary: string;
}

export async function lookupAddresses(name: string, opts: Pick<HostLookupOptions, 'resolver' | 'addressOrder'>): Promise<AddressLookup> {
  const families: Array<'A' | 'AAAA'> =
    opts.addressOrder === 'ipv4-only' ? ['A'] : opts.addressOrder === 'ipv6-only' ? ['AAAA']
    : opts.addressOrder === 'ipv6-first' ? ['AAAA', 'A'] : ['A', 'AAAA'];
  const settled = await Promise.allSettled(
    families.map((f) => (f === 'A' ? opts.resolver.resolve4(name) : opts.resolver.resolve6(name))),
  );
  const addresses: string[] = [];
  const failures: ResolveErrorCode[] = [];
  const parts: string[] = [];
  settled.forEach((s, i) => {
    const family = families[i] ?? 'A';
    if (s.status === 'fulfilled' && s.value.length > 0) {
      addresses.push(...s.value);
      parts.push(`${family} ${s.value.join(', ')}`);
    } else {
      const code = s.status === 'fulfilled' ? 'DNS_NODATA' : codeOf(s.reason);
      failures.push(code);
      parts.push(`${family} none (${code})`);
    }
  });
  const failure =
    addresses.length > 0 ? undefined
    : failures.includes('DNS_TEMPFAIL') ? 'DNS_TEMPFAIL'
    : failures.includes('DNS_NODATA') ? 'DNS_NODATA'
    : 'DNS_NOTFOUND';
  return { addresses, failure, summary: parts.join('; ') };
}

/** A resolver that throws something other than ResolveError is broken: treat as temporary. */
function codeOf(err: unknown): ResolveErrorCode {
  return err instanceof ResolveError ? err.code : 'DNS_TEMPFAIL';
}

/**
 * The hosts for mail to `domain` (already normalised: lower-case A-labels, or an address
 * literal). Appends the decision path to `explain`.
 */
export async function resolveDomainHosts(domain: string, opts: HostLookupOptions, explain: string[]): Promise<HostsResult> {
  const literal = parseDomainLiteral(domain);
  if (literal !== undefined) {
    if (!literal.ok) return fail('ROUTE_BAD_DOMAIN', literal.reason);
    explain.push(`address literal: no DNS, deliver to ${literal.address}`);
    return { ok: true, hosts: [{ name: domain, address: literal.address, port: opts.mxPort(domain, literal.address), preference: 0 }] };
  }

  let records: MxRecord[];
  try {
    // Names compare and log in one spelling: lower case, no trailing dot ('.' becomes '', root).
    records = (await opts.resolver.resolveMx(domain)).map((r) => ({ exchange: r.exchange.toLowerCase().replace(/\.$/, ''), priority: r.priority }));
  } catch (err) {
    const code = codeOf(err);
    const detail = err instanceof ResolveError ? err.detail : String(err);
    explain.push(`MX ${domain}: ${code} (${detail})`);
    if (code === 'DNS_NOTFOUND') return fail('ROUTE_NO_SUCH_DOMAIN', `domain ${domain} does not exist (NXDOMAIN)`);
    if (code === 'DNS_TEMPFAIL') return fail('ROUTE_DNS_TEMPFAIL', `MX lookup for ${domain} failed temporarily (${detail})`);
    records = [];
  }

  if (records.length === 0) {
    // RFC 5321 §5.1: no MX records → the domain itself is the implicit MX, preference 0.
    explain.push(`MX ${domain}: none, using the domain's own address (implicit MX, RFC 5321 §5.1)`);
    const found = await lookupAddresses(domain, opts);
    explain.push(`${domain}: ${found.summary}`);
    if (found.failure === 'DNS_TEMPFAIL') return fail('ROUTE_DNS_TEMPFAIL', `address lookup for ${domain} failed temporarily`);
    if (found.failure === 'DNS_NOTFOUND') return fail('ROUTE_NO_SUCH_DOMAIN', `domain ${domain} does not exist (NXDOMAIN)`);
    if (found.failure === 'DNS_NODATA') return fail('ROUTE_NO_ADDRESS', `domain ${domain} has no MX and no address record`);
    const hosts = found.addresses.slice(0, opts.maxAddresses).map((address) => ({ name: domain, address, port: opts.mxPort(domain, address), preference: 0 }));
    return { ok: true, hosts };
  }

  explain.push(`MX ${domain}: ${[...records].sort((a, b) => a.priority - b.priority).map((r) => `${r.priority} ${isRoot(r.exchange) ? '.' : r.exchange}`).join(', ')}`);
  // RFC 7505's null MX is one `0 .` record. A root exchange at another preference, or several,
  // says the same thing less tidily: read it the same way rather than retry it for days.
  if (records.every((r) => isRoot(r.exchange))) {
    return fail('ROUTE_NULL_MX', `domain ${domain} accepts no mail (null MX, RFC 7505)`);
  }
  const usable = records.filter((r) => !isRoot(r.exchange));
  if (usable.length < records.length) explain.push(`ignored ${records.length - usable.length} '.' exchange(s) mixed with real MX records (RFC 7505 §3 forbids the mix)`);

  const ordered = orderMx(usable, opts.random);
  const considered = ordered.slice(0, opts.maxMxHosts);
  explain.push(`MX order: ${considered.map((r) => `${r.exchange} (${r.priority})`).join(', ')}`);
  if (ordered.length > considered.length) {
    explain.push(`ignored ${ordered.length - considered.length} less preferred MX host(s): at most ${opts.maxMxHosts} per attempt`);
  }

  // Look all considered hosts up at once: the slowest lookup, not their sum, bounds the wait.
  const lookups = await Promise.all(considered.map((r) => lookupAddresses(r.exchange, opts)));
  const hosts: RouteHost[] = [];
  const seen = new Set<string>();
  const skipped: string[] = [];
  let capped = 0;
  considered.forEach((record, i) => {
    const found = lookups[i];
    if (found === undefined) return;
    const name = record.exchange;
    if (found.failure !== undefined) {
      // A host that does not resolve is skipped like one that does not answer (RFC 5321 §5.1:
      // try the next); a CNAME is followed by the resolver, and a dangling one lands here.
      explain.push(`${name}: ${found.summary}: skipped`);
      skipped.push(`${name} (${found.failure})`);
      return;
    }
    explain.push(`${name}: ${found.summary}`);
    for (const address of found.addresses) {
      if (seen.has(address)) continue; // two MX names for one machine: one try is enough
      if (hosts.length >= opts.maxAddresses) {
        capped++;
        continue;
      }
      seen.add(address);
      hosts.push({ name, address, port: opts.mxPort(name, address), preference: record.priority });
    }
  });
  if (hosts.length === 0) {
    return fail('ROUTE_NO_USABLE_HOST', `no MX host of ${domain} has an address: ${skipped.join(', ')}`);
  }
  if (capped > 0) explain.push(`dropped ${capped} address(es): at most ${opts.maxAddresses} per attempt`);
  return { ok: true, hosts };
}

/**
 * The addresses of a named host that is not looked up by MX (a smart host). A name that does not
 * resolve defers: it is our configuration, and a typo must not bounce every message.
 * `localhost` is the loopback without DNS (RFC 6761 §6.3), since resolvers need not know it.
 */
export async function resolveNamedHost(host: string, port: number, opts: HostLookupOptions, explain: string[]): Promise<HostsResult> {
  if (isIPv4(host) || isIPv6(host)) {
    explain.push(`${host}: an address, no DNS`);
    return { ok: true, hosts: [{ name: host, address: host, port, preference: 0 }] };
  }
  const name = host.toLowerCase().replace(/\.$/, '');
  let addresses: readonly string[];
  if (name === 'localhost' || name.endsWith('.localhost')) {
    const loopback = opts.addressOrder === 'ipv4-only' ? ['127.0.0.1'] : opts.addressOrder === 'ipv6-only' ? ['::1']
      : opts.addressOrder === 'ipv6-first' ? ['::1', '127.0.0.1'] : ['127.0.0.1', '::1'];
    explain.push(`${name}: loopback ${loopback.join(', ')} (RFC 6761, no DNS)`);
    addresses = loopback;
  } else {
    const found = await lookupAddresses(name, opts);
    explain.push(`${name}: ${found.summary}`);
    if (found.failure !== undefined) {
      return fail(found.failure === 'DNS_TEMPFAIL' ? 'ROUTE_DNS_TEMPFAIL' : 'ROUTE_NO_USABLE_HOST', `smart host ${name} has no address (${found.failure})`);
    }
    addresses = found.addresses;
  }
  return { ok: true, hosts: addresses.slice(0, opts.maxAddresses).map((address) => ({ name, address, port, preference: 0 })) };
}
