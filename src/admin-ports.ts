/**
 * @module admin-ports
 * Part of the composition root (main.ts's unit in the import rules): what admin/ needs from
 * folders it may not import. `explainRoutes` turns delivery's RouteTable decision (the same
 * table, resolver and --dns the queue manager uses) into admin's RouteExplanation: the route kind
 * (a configured route, --smarthost, MX, the A/AAAA fallback, an address literal, a null MX, an
 * error), the hosts in try order with their resolved addresses, the TLS policy and why.
 * `offlineTimeseries` answers UNAVAILABLE for the offline CLI: only a running server records the
 * per-minute series (admin/timeseries); the overview works offline too, straight from the store.
 *
 * No I/O of its own beyond the route table's DNS lookups.
 */
import { ApiErrorV1 } from './api/index.js';
import type { ExplainHostV1, TimeseriesV1 } from './api/index.js';
import type { RouteExplanation } from './admin/index.js';
import type { Config } from './config/index.js';
import type { MtaStsResolver, RouteTable } from './delivery/index.js';

/** `settings` is read at each call: the configuration in force after SIGHUP reloads. */
export function explainRoutes(
  table: Pick<RouteTable, 'resolveRoute'>,
  settings: () => Pick<Config, 'smarthost' | 'delivery' | 'outboundTls'>,
  mtaSts?: Pick<MtaStsResolver, 'cached'>,
): (domain: string) => Promise<RouteExplanation> {
  return async (domain) => {
    const { smarthost, delivery: { mxPort }, outboundTls } = settings();
    const r = await table.resolveRoute(domain);
    const steps = r.explain.join('; ');
    const route = r.route;
    const mx = route === undefined || route.nextHop.kind === 'mx';
    const tls = tlsOf(route, outboundTls, mx && outboundTls.mtaSts === 'on' ? { resolver: mtaSts, domain: domain.toLowerCase().replace(/\.$/, '') } : undefined);
    const concurrency = {
      ...(route?.concurrency !== undefined ? { concurrency: route.concurrency } : {}),
      ...(route?.rate !== undefined ? { rate: route.rate } : {}),
    };
    if (!r.ok) {
      const kind = r.code === 'ROUTE_NULL_MX' ? 'null-mx' : 'error';
      return { destination: domain.toLowerCase(), route: { kind, detail: `${r.status} ${r.reason} [${steps}]` }, hosts: [], tls, permanent: r.permanent, ...concurrency };
    }
    const hop = r.route.nextHop;
    const kind = hop.kind === 'smarthost'
      ? (smarthost !== undefined && r.route.pattern === '*' && hop.host === smarthost.host && hop.port === smarthost.port ? 'smarthost' : 'route')
      : domain.startsWith('[') ? 'literal' : r.explain.some((line) => line.includes('implicit MX')) ? 'a-fallback' : 'mx';
    const hosts: ExplainHostV1[] = [];
    for (const h of r.hosts) {
      const last = hosts[hosts.length - 1];
      if (last !== undefined && last.host === h.name && last.port === h.port) {
        (last.addresses as string[]).push(h.address);
        continue;
      }
      hosts.push({ host: h.name, port: h.port, ...(kind === 'mx' ? { preference: h.preference } : {}), addresses: [h.address] });
    }
    // MX hosts whose names did not resolve are skipped by delivery: listed last, with the reason.
    if (kind === 'mx') {
      const preference = new Map<string, number>();
      for (const m of r.explain.find((line) => line.startsWith('MX order: '))?.slice('MX order: '.length).split(', ') ?? []) {
        const hit = /^(\S+) \((\d+)\)$/.exec(m);
        if (hit) preference.set(hit[1] ?? '', Number(hit[2]));
      }
      for (const line of r.explain) {
        const skipped = /^(\S+): (.*): skipped$/.exec(line);
        if (!skipped) continue;
        const name = skipped[1] ?? '';
        hosts.push({ host: name, port: mxPort, ...(preference.has(name) ? { preference: preference.get(name) ?? 0 } : {}), error: skipped[2] ?? '' });
      }
    }
    return { destination: r.destination, route: { kind, detail: steps }, hosts, tls, ...concurrency };
  };
}

/**
 * The TLS policy a delivery to this route would use, and why: the route's `tls` or --tls-policy;
 * for MX routes the MTA-STS policy the running server has cached (enforce raises to verify), or
 * that it is looked up at delivery. REQUIRETLS messages always need verify (said, too).
 */
function tlsOf(
  route: { readonly tls?: string; readonly pattern: string; readonly auth?: { readonly user: string } } | undefined,
  settings: Pick<Config, 'outboundTls'>['outboundTls'],
  mtaSts: { readonly resolver: Pick<MtaStsResolver, 'cached'> | undefined; readonly domain: string } | undefined,
): RouteExplanation['tls'] {
  const base = route?.tls ?? settings.policy;
  const from = route?.tls !== undefined ? `route '${route.pattern}' sets tls ${base}` : `no route sets tls, so --tls-policy applies: ${base}`;
  const meaning: Readonly<Record<string, string>> = {
    none: 'never STARTTLS, always plain text',
    may: 'STARTTLS when offered, certificate not checked; a failed handshake is retried once in plain text',
    encrypt: 'STARTTLS required, certificate not checked; never plain text (deferred 4.7.4 otherwise)',
    verify: 'STARTTLS required with a certificate that verifies for the host name; never plain text (deferred 4.7.x otherwise)',
  };
  const parts = [`${from} (${meaning[base] ?? base})`];
  let policy = base;
  if (mtaSts !== undefined) {
    const cached = mtaSts.resolver?.cached(mtaSts.domain);
    if (cached === undefined) parts.push(mtaSts.resolver === undefined ? 'MTA-STS is looked up at delivery' : 'no MTA-STS policy cached for this domain (looked up at delivery)');
    else {
      parts.push(`MTA-STS policy id ${cached.id}, mode ${cached.mode}, mx ${cached.mx.join(', ')}`);
      if (cached.mode === 'enforce') {
        policy = 'verify';
        parts.push('enforce: unlisted MX hosts are skipped and the others need verify');
      }
    }
  } else if (route !== undefined && route.tls === undefined && settings.mtaSts === 'off') parts.push('MTA-STS is off');
  if (route?.auth !== undefined) parts.push(`AUTH as ${route.auth.user}, only over TLS`);
  parts.push('a REQUIRETLS message needs verify and a peer announcing REQUIRETLS (else 5.7.30)');
  return { policy, why: parts.join('; ') };
}

/** Offline (`postwire queue --spool`), nothing records outcomes: the series exists only in a running server. */
export function offlineTimeseries(): () => Promise<TimeseriesV1> {
  return () => Promise.reject(new ApiErrorV1('UNAVAILABLE', 'the per-minute series is kept by a running server (use --admin HOST:PORT)'));
}
