/**
 * @module smtpd/limits
 * Inbound abuse limits, apart from protocol correctness: who is exempt, how fast a client may
 * send (messages and recipients per window, a token bucket per client IP or per authenticated
 * user), and the tarpit that slows a session down once it has made too many errors. Who calls it:
 * smtpd/listener (exemption and concurrent connections per IP, one Tarpit per session), the
 * Policy chain (rates, on MAIL and RCPT, through withRateLimits), main (settings, reload, metrics).
 *
 * Keys: a session with an AUTH identity (PolicyClient.user) is counted per user, wherever it
 * connects from, and the user limits apply even to exempt addresses (a stolen password must not
 * become unlimited through a local webmail); any other session is counted per client address,
 * IPv6 per /64 (what one host is usually given, so an attacker cannot rotate through it), and
 * clients inside the exemption list (--limits-exempt, default loopback) are not counted at all.
 *
 * Replies: over a rate, `451 4.7.1` (RFC 3463 X.7.1, "delivery not authorized": the policy code
 * Postfix anvil uses, there with 450) on the MAIL or RCPT that went over, saying which limit and
 * when a retry will pass; a refused request spends no token, a refused recipient is never added
 * to the transaction. The bucket refills continuously, so "N per window" is also the burst.
 *
 * Failure: a full key table forgets its least recently used client (fails open for that client,
 * see util/token-bucket); refusals are counted (metrics) and logged, the log lines themselves
 * limited per minute so an attack cannot flood the log.
 */
import { reply } from '../protocol/index.js';
import type { Reply } from '../protocol/index.js';
import type { Logger } from '../obs/index.js';
import { BucketTable, cidrContains, compileCidrList, formatDuration, ipToBytes, isIPv4Mapped, take } from '../util/index.js';
import type { BucketState } from '../util/index.js';
import type { Policy, PolicyClient, Verdict } from './policy.js';

/** Every limit that can refuse a client, as counted in `postwire_smtpd_limit_refusals_total{limit}`. */
export const LIMIT_NAMES = ['connections', 'connections-per-ip', 'ip-messages', 'ip-recipients', 'user-messages', 'user-recipients'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export interface RateSettings {
  /** Per window; 0 turns a limit off. */
  readonly ipMessages: number;
  readonly ipRecipients: number;
  readonly userMessages: number;
  readonly userRecipients: number;
  /** The window the rates are counted over, in ms (a full bucket refills in it). */
  readonly windowMs: number;
  /** Clients remembered per rate table (bounded memory against address spraying). */
  readonly maxKeys: number;
}

export interface TarpitSettings {
  /** Errors a session may make before its replies are delayed; 0 turns the tarpit off. */
  readonly after: number;
  /** The delay grows by this much per error beyond `after`. */
  readonly stepMs: number;
  /** ... up to this. */
  readonly maxMs: number;
}

export interface LimitSettings {
  /** CIDRs whose clients the per-IP limits and the tarpit do not apply to. */
  readonly exempt: readonly string[];
  readonly rates: RateSettings;
  readonly tarpit: TarpitSettings;
  /** Refusal log lines per minute at most; the rest are counted in the next line. */
  readonly logPerMinute: number;
}

export interface LimitsDeps {
  readonly now: () => number;
  readonly log: Logger;
  /** Metrics: one call per refusal. */
  readonly onRefusal?: (limit: LimitName) => void;
  /** Metrics: one call per reply the tarpit delayed. */
  readonly onTarpit?: (delayMs: number) => void;
}

/** The key a client address is counted under: IPv4 as is (also when IPv4-mapped), IPv6 per /64. */
export function addressKey(ip: string): string {
  // Runs per MAIL and RCPT: the IPv4 text is its own key, without parsing it.
  if (!ip.includes(':')) return ip;
  const bytes = ipToBytes(ip);
  if (bytes === undefined) return ip;
  if (isIPv4Mapped(ip)) return Array.from(bytes.subarray(12)).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return `${groups.join(':')}::/64`;
}

type Kind = 'messages' | 'recipients';

export class InboundLimits {
  private settings: LimitSettings;
  private exemptNets: ReturnType<typeof compileCidrList>;
  private readonly tables: Record<'ip' | 'user', Record<Kind, BucketTable>>;
  private logBucket: BucketState | undefined;
  private suppressed = 0;

  constructor(settings: LimitSettings, private readonly deps: LimitsDeps) {
    this.settings = settings;
    this.exemptNets = compileCidrList(settings.exempt);
    const table = (n: number): BucketTable => new BucketTable(bucketRate(n, settings.rates.windowMs), { maxKeys: settings.rates.maxKeys, now: deps.now });
    this.tables = {
      ip: { messages: table(settings.rates.ipMessages), recipients: table(settings.rates.ipRecipients) },
      user: { messages: table(settings.rates.userMessages), recipients: table(settings.rates.userRecipients) },
    };
  }

  /** SIGHUP: new settings for every session from now on; what clients have spent is kept. */
  reconfigure(settings: LimitSettings): void {
    const { rates } = settings;
    this.settings = settings;
    this.exemptNets = compileCidrList(settings.exempt);
    this.tables.ip.messages.reconfigure(bucketRate(rates.ipMessages, rates.windowMs), rates.maxKeys);
    this.tables.ip.recipients.reconfigure(bucketRate(rates.ipRecipients, rates.windowMs), rates.maxKeys);
    this.tables.user.messages.reconfigure(bucketRate(rates.userMessages, rates.windowMs), rates.maxKeys);
    this.tables.user.recipients.reconfigure(bucketRate(rates.userRecipients, rates.windowMs), rates.maxKeys);
  }

  isExempt(ip: string): boolean {
    return cidrContains(this.exemptNets, ip);
  }

  /** The Policy `inner` with the message and recipient rates in front of its answers. */
  withRateLimits(inner: Policy): Policy {
    return {
      onConnect: (client) => inner.onConnect(client),
      onMail: async (client, from, params) => {
        const verdict = await inner.onMail(client, from, params);
        return verdict.accept ? this.check(client, 'messages') : verdict;
      },
      // Only a recipient the inner policy accepts spends a token: relay probes are refused anyway.
      onRcpt: async (client, to, params) => {
        const verdict = await inner.onRcpt(client, to, params);
        return verdict.accept ? this.check(client, 'recipients') : verdict;
      },
    };
  }

  /** A tarpit for a new session from `ip`, or undefined when none applies; delays never exceed `capMs`. */
  tarpit(ip: string, capMs: number): Tarpit | undefined {
    const t = this.settings.tarpit;
    if (t.after === 0 || this.isExempt(ip)) return undefined;
    return new Tarpit({ ...t, maxMs: Math.min(t.maxMs, capMs) }, this.deps.onTarpit);
  }

  /** Count a refusal and log it (log lines limited per minute; the ones left out are counted). */
  refused(limit: LimitName, fields: Readonly<Record<string, unknown>>): void {
    this.deps.onRefusal?.(limit);
    const rate = bucketRate(this.settings.logPerMinute, 60_000);
    const r = take(this.logBucket, rate, this.deps.now());
    this.logBucket = r.state;
    if (!r.allowed) {
      this.suppressed++;
      return;
    }
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.deps.log.warn({ limit, ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, 'limit refused');
  }

  private check(client: PolicyClient, kind: Kind): Verdict {
    const rates = this.settings.rates;
    const byUser = client.user !== undefined;
    if (!byUser && this.isExempt(client.ip)) return ACCEPT;
    const limit = byUser ? (kind === 'messages' ? rates.userMessages : rates.userRecipients) : kind === 'messages' ? rates.ipMessages : rates.ipRecipients;
    if (limit === 0) return ACCEPT;
    const key = byUser ? (client.user ?? '') : addressKey(client.ip);
    const result = this.tables[byUser ? 'user' : 'ip'][kind].take(key);
    if (result.allowed) return ACCEPT;
    const name: LimitName = `${byUser ? 'user' : 'ip'}-${kind}`;
    this.refused(name, { client: client.ip, session: client.session, ...(byUser ? { user: client.user } : { key }), retryAfterMs: result.retryAfterMs });
    return { accept: false, reply: rateReply(kind, byUser, limit, rates.windowMs, result.retryAfterMs) };
  }
}

const ACCEPT: Verdict = { accept: true };

/** A limit of 0 is off and never reaches a table; the table still needs a valid rate. */
function bucketRate(limit: number, windowMs: number): { capacity: number; windowMs: number } {
  return { capacity: Math.max(1, limit), windowMs: Math.max(1, windowMs) };
}

function rateReply(kind: Kind, byUser: boolean, limit: number, windowMs: number, retryAfterMs: number): Reply {
  const who = byUser ? 'for your user' : 'from your address';
  const retry = formatDuration(Math.max(1, Math.ceil(retryAfterMs / 1000)) * 1000);
  const what = limit === 1 ? kind.slice(0, -1) : kind;
  return reply(451, '4.7.1', `Rate limit: at most ${limit} ${what} per ${formatDuration(windowMs)} ${who}; try again in ${retry}`);
}

/**
 * One session's error count and the delay it earns (Postfix's smtpd_soft_error_limit and
 * smtpd_error_sleep_time, growing): once `after` errors were made, every further reply waits
 * stepMs × (errors − after + 1), at most maxMs. The connection sleeps on its clock's timer, so a
 * tarpitted session costs a socket and a timer, never the event loop.
 */
export class Tarpit {
  private errors = 0;

  constructor(private readonly settings: TarpitSettings, private readonly onDelay?: (ms: number) => void) {}

  /**
   * Errors are what the hard limit counts: 5xx replies (bad commands, relay refusals, failed
   * AUTH). Not the 451s of the rate limits: a bulk client that pipelines a hundred recipients
   * past its rate would otherwise wait minutes in the tarpit on top of being refused.
   */
  noteReply(r: Reply): void {
    if (r.code >= 500) this.errors++;
  }

  /** How long to wait before handling the next command; 0 until the session is in the tarpit. */
  nextDelay(): number {
    const over = this.errors - this.settings.after;
    if (over < 0) return 0;
    const ms = Math.min(this.settings.maxMs, this.settings.stepMs * (over + 1));
    if (ms > 0) this.onDelay?.(ms);
    return ms;
  }

  get errorCount(): number {
    return this.errors;
  }
}
