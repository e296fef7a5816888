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
import type { RouteTable } from './delivery/index.js';

/** `settings` is read at each call: the configuration in force after SIGHUP reloads. */
export function explainRoutes(table: Pick<RouteTable, 'resolveRoute'>, settings: () => Pick<Config, 'smarthost' | 'delivery'>): (domain: string) => Promise<RouteExplanation> {
  return async (domain) => {
    const { smarthost, delivery: { mxPort } } = settings();
    const r = await table.resolveRoute(domain);
    const steps = r.explain.join('; ');
    const route = r.route;
    const tls = tlsOf(route?.tls, route?.pattern);
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

/** Outbound TLS as it is in this version: routes accept `none` and `may`, and there is no client STARTTLS yet. */
function tlsOf(tls: string | undefined, pattern: string | undefined): RouteExplanation['tls'] {
  const plaintext = 'this version has no outbound STARTTLS yet, so the message goes in plaintext';
  if (tls === undefined) return { policy: 'none', why: `no route sets tls, so the default applies: none; ${plaintext}` };
  if (tls === 'may') return { policy: 'may', why: `route '${pattern ?? '*'}' sets tls may (STARTTLS when the server offers it, else plaintext); ${plaintext}` };
  return { policy: tls, why: `route '${pattern ?? '*'}' sets tls ${tls}; ${plaintext}` };
}

/** Offline (`postwire queue --spool`), nothing records outcomes: the series exists only in a running server. */
export function offlineTimeseries(): () => Promise<TimeseriesV1> {
  return () => Promise.reject(new ApiErrorV1('UNAVAILABLE', 'the per-minute series is kept by a running server (use --admin HOST:PORT)'));
}
