/**
 * @module delivery/mta-sts
 * SMTP MTA Strict Transport Security (RFC 8461) for MX-routed domains: the TXT record
 * `_mta-sts.<domain>` (`v=STSv1; id=…`) through the injected Resolver, the policy fetched over
 * HTTPS from `mta-sts.<domain>/.well-known/mta-sts.txt` (certificate verified against the trust
 * store, no redirects, a size cap, a timeout, the host name resolved through the same Resolver,
 * the port configurable for tests), parsed, and cached in memory per domain by id and max_age.
 *
 * Modes (the agent applies them): `enforce`: MX hosts the policy does not list are skipped and
 * the others need `verify`; `testing`: delivery goes on as without a policy, failures are noted
 * and logged; `none`: ignored.
 *
 * RFC 8461 §5.1 control flow, as built: a cached, unexpired policy whose id matches the TXT
 * record is used without fetching; a new id (or none cached) fetches; a failed fetch or lookup
 * falls back to the cached policy while it is unexpired, else delivery proceeds as if the
 * domain had no policy (the RFC's rule: an attacker who blocks the fetch gains nothing over an
 * attacker who strips the TXT record, and the first contact is trust on first use anyway).
 *
 * The parser and matcher are ours (40 lines): mailauth's getPolicy/fetchPolicy fetch with the
 * system resolver on port 443, which the configured --dns and the tests' port cannot reach.
 *
 * Who calls it: delivery/agent (policyFor), main's explain port (cached). The cache is in memory:
 * a restart fetches again (the RFC's max_age is an upper bound on caching, not a lower one).
 * Failure behaviour: never throws; every failure is a `detail` string.
 */
import { request } from 'node:https';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import type { Clock } from '../util/index.js';
import { DEFAULT_ADDRESS_ORDER, lookupAddresses } from './mx.js';
import type { Resolver } from './resolver.js';

export type MtaStsMode = 'enforce' | 'testing' | 'none';

export interface MtaStsPolicy {
  readonly domain: string;
  readonly id: string;
  readonly mode: MtaStsMode;
  /** `mx` patterns: `mail.example.com` or `*.example.com` (one leftmost label). */
  readonly mx: readonly string[];
  /** Seconds, as published (RFC 8461: at most 31557600). */
  readonly maxAge: number;
  /** ms since the epoch, on the injected clock. */
  readonly expires: number;
}

export interface MtaStsLookup {
  readonly policy?: MtaStsPolicy;
  /** How the policy was found (or why there is none), for the history and `explain`. */
  readonly detail: string;
}

/** RFC 8461 §3.2: max_age is at most a year (31557600 s). */
export const MTA_STS_MAX_AGE_LIMIT = 31_557_600;

export interface MtaStsOptions {
  readonly resolver: Resolver;
  readonly clock: Clock;
  /** HTTPS port of the policy host (443; tests point it at a server on port 0). */
  readonly port: number;
  readonly timeoutMs: number;
  /** Largest policy body accepted, in octets. */
  readonly maxBytes: number;
  /** Trust store (PEM) for the policy host's certificate; undefined: Node's default roots. */
  readonly ca?: string;
}

/** The id of the single `v=STSv1` TXT record, or why there is no usable one (RFC 8461 §3.1). */
export function parseStsRecord(records: readonly (readonly string[])[]): { ok: true; id: string } | { ok: false; reason: string } {
  const sts = records.map((parts) => parts.join('')).filter((t) => /^v=STSv1\s*(;|$)/.test(t));
  if (sts.length === 0) return { ok: false, reason: 'no v=STSv1 TXT record' };
  if (sts.length > 1) return { ok: false, reason: 'more than one v=STSv1 TXT record' };
  const fields = new Map<string, string>();
  for (const part of (sts[0] ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const id = fields.get('id');
  if (id === undefined || !/^[A-Za-z0-9]{1,32}$/.test(id)) return { ok: false, reason: `TXT record id ${JSON.stringify(id ?? '')} is not 1-32 letters and digits` };
  return { ok: true, id };
}

/** The policy file (RFC 8461 §3.2): `key: value` lines, CRLF or LF; unknown keys ignored. */
export function parseStsPolicy(text: string): { ok: true; mode: MtaStsMode; mx: string[]; maxAge: number } | { ok: false; reason: string } {
  let version: string | undefined;
  let mode: string | undefined;
  let maxAge: string | undefined;
  const mx: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'version') version ??= value;
    else if (key === 'mode') mode ??= value;
    else if (key === 'max_age') maxAge ??= value;
    else if (key === 'mx') mx.push(value.toLowerCase().replace(/\.$/, ''));
  }
  if (version !== 'STSv1') return { ok: false, reason: `version ${JSON.stringify(version ?? '')} is not STSv1` };
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return { ok: false, reason: `mode ${JSON.stringify(mode ?? '')} is not enforce, testing or none` };
  if (maxAge === undefined || !/^\d{1,10}$/.test(maxAge) || Number(maxAge) > MTA_STS_MAX_AGE_LIMIT) {
    return { ok: false, reason: `max_age ${JSON.stringify(maxAge ?? '')} is not 0..${MTA_STS_MAX_AGE_LIMIT}` };
  }
  if (mode !== 'none' && mx.length === 0) return { ok: false, reason: `mode ${mode} without any mx line` };
  return { ok: true, mode, mx, maxAge: Number(maxAge) };
}

/** RFC 8461 §4.1: an exact name, or `*.suffix` matching exactly one more leftmost label. */
export function mxMatches(host: string, patterns: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((p) => {
    if (!p.startsWith('*.')) return p === name;
    const dot = name.indexOf('.');
    return dot > 0 && name.slice(dot + 1) === p.slice(2);
  });
}

export class MtaStsResolver {
  readonly #options: MtaStsOptions;
  readonly #cache = new Map<string, MtaStsPolicy>();
  /** Lookups under way: deliveries to one domain at once share one TXT query and one fetch. */
  readonly #pending = new Map<string, Promise<MtaStsLookup>>();

  constructor(options: MtaStsOptions) {
    this.#options = options;
  }

  /** The cached, unexpired policy of `domain`, without any lookup (explain). */
  cached(domain: string): MtaStsPolicy | undefined {
    const p = this.#cache.get(domain);
    return p !== undefined && p.expires > this.#options.clock.now() ? p : undefined;
  }

  /** The policy in force for `domain` now (RFC 8461 §5.1); never throws. */
  policyFor(domain: string): Promise<MtaStsLookup> {
    const pending = this.#pending.get(domain);
    if (pending !== undefined) return pending;
    const lookup = this.#policyNow(domain).finally(() => this.#pending.delete(domain));
    this.#pending.set(domain, lookup);
    return lookup;
  }

  async #policyNow(domain: string): Promise<MtaStsLookup> {
    const { resolver } = this.#options;
    const cached = this.cached(domain);
    const fallback = (why: string): MtaStsLookup =>
      cached !== undefined ? { policy: cached, detail: `${why}; the cached policy id ${cached.id} (mode ${cached.mode}) applies until it expires` } : { detail: `${why}; delivering as without MTA-STS` };
    if (resolver.resolveTxt === undefined) return { detail: 'MTA-STS not looked up (the resolver has no TXT)' };
    let records: string[][];
    try {
      records = await resolver.resolveTxt(`_mta-sts.${domain}`);
    } catch (err) {
      return fallback(`no MTA-STS record for ${domain} (${err instanceof Error ? err.message : String(err)})`);
    }
    const record = parseStsRecord(records);
    if (!record.ok) return fallback(`no usable MTA-STS record for ${domain}: ${record.reason}`);
    if (cached !== undefined && cached.id === record.id) return { policy: cached, detail: `MTA-STS policy id ${cached.id} (mode ${cached.mode}, cached)` };
    const fetched = await this.#fetch(domain);
    if (!fetched.ok) return fallback(`MTA-STS policy for ${domain} (id ${record.id}) could not be fetched: ${fetched.reason}`);
    const parsed = parseStsPolicy(fetched.body);
    if (!parsed.ok) return fallback(`MTA-STS policy for ${domain} (id ${record.id}) is invalid: ${parsed.reason}`);
    const policy: MtaStsPolicy = { domain, id: record.id, mode: parsed.mode, mx: parsed.mx, maxAge: parsed.maxAge, expires: this.#options.clock.now() + parsed.maxAge * 1000 };
    this.#cache.set(domain, policy);
    return { policy, detail: `MTA-STS policy id ${policy.id} (mode ${policy.mode}, fetched)` };
  }

  /** GET https://mta-sts.<domain>/.well-known/mta-sts.txt: 200, text/plain, at most maxBytes. */
  #fetch(domain: string): Promise<{ ok: true; body: string } | { ok: false; reason: string }> {
    const { port, timeoutMs, maxBytes, ca, clock } = this.#options;
    const host = `mta-sts.${domain}`;
    return new Promise((resolve) => {
      let done = false;
      const finish = (r: { ok: true; body: string } | { ok: false; reason: string }): void => {
        if (done) return;
        done = true;
        timer.cancel();
        req.destroy();
        resolve(r);
      };
      const req = request({
        host,
        port,
        path: '/.well-known/mta-sts.txt',
        method: 'GET',
        lookup: this.#lookup(),
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        ...(ca !== undefined ? { ca } : {}),
        agent: false,
        headers: { accept: 'text/plain' },
      });
      const timer = clock.setTimer(timeoutMs, () => finish({ ok: false, reason: `no answer within ${timeoutMs} ms` }));
      req.on('error', (err) => finish({ ok: false, reason: err.message }));
      req.on('response', (res) => {
        // RFC 8461 §3.3: redirects are not followed; only a 200 is a policy.
        if (res.statusCode !== 200) return finish({ ok: false, reason: `HTTP ${res.statusCode ?? '?'} from ${host}${res.headers.location !== undefined ? ' (redirects are not followed)' : ''}` });
        const type = res.headers['content-type'] ?? '';
        if (!/^text\/plain\b/i.test(type)) return finish({ ok: false, reason: `content type ${JSON.stringify(type)} is not text/plain` });
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) finish({ ok: false, reason: `the policy is larger than ${maxBytes} octets` });
          else chunks.push(chunk);
        });
        res.on('end', () => finish({ ok: true, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => finish({ ok: false, reason: err.message }));
      });
      req.end();
    });
  }

  /** The policy host's address through our Resolver (the configured --dns), as MX hosts are looked up (mx.ts). */
  #lookup(): LookupFunction {
    const resolver = this.#options.resolver;
    return (hostname, options, callback) => {
      const lookup = async (): Promise<{ address: string; family: 4 | 6 }> => {
        const found = await lookupAddresses(hostname, { resolver, addressOrder: DEFAULT_ADDRESS_ORDER });
        const address = found.addresses[0];
        if (address === undefined) throw new Error(`${hostname} has no address (${found.summary})`);
        return { address, family: isIP(address) === 6 ? 6 : 4 };
      };
      lookup().then(
        (a) => (options.all === true ? callback(null, [a]) : callback(null, a.address, a.family)),
        (err: unknown) => callback(Object.assign(err instanceof Error ? err : new Error(String(err)), { code: 'ENOTFOUND' }) as NodeJS.ErrnoException, ''),
      );
    };
  }
}
