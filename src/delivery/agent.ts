/**
 * @module delivery/agent
 * The delivery agent (undici's Agent, Postfix smtp_connect's server loop): one message, the hosts
 * of one route in order. It builds the OutboundMessage, asks the pool for a connection per host,
 * runs the transaction, and turns facts into Outcomes through delivery/outcome, the only place
 * that happens.
 *
 * Host order, per recipient: scope `destination` (connect refused or timed out, a 4xx/5xx greeting
 * or EHLO, a 421, a connection lost before our end-of-data) sends the recipient on to the next
 * host; any other outcome is final, from the first host that decided it; when no host is left the
 * last failure stands. `ambiguous` (RFC 1047 window) and `held` (framing fault) stop the walk at
 * once: another host could get a second copy, or a partial one (invariants 1 and 3).
 *
 * Reuse without a probe (delivery/pool): a connection parked less than `probeAfterMs` ago comes
 * without RSET. If the peer had closed it meanwhile (the transaction's result says
 * lostBeforeFirstReply: lost before MAIL's reply, or that reply a 421), nothing was decided and no
 * body byte sent: the connection is dropped and the same recipients go, once per host, over a
 * probed pooled connection or a new one. That is neither an outcome nor a note in the history.
 *
 * The RFC 1047 window (invariant 3): job.beforeEndOfData goes with the job to every connection,
 * which awaits it before end-of-data; when it rejects, nothing past it is sent, the recipients it
 * left open are deferred (local, scope message: no further host), and the note says why.
 *
 * Long lines (issue 3 item 3, DESIGN.md invariant 1's one exception): the `longLines` option
 * (config `long-lines`, default `wrap`) goes to every connection, which applies it per peer (see
 * delivery/connection): unchanged by BDAT to a BINARYMIME peer; otherwise wrapped with CRLF SP,
 * passed unchanged, or bounced before MAIL with a local 554 5.6.0 (scope message: no further host).
 * What was done goes into the report's note, hence the message's history.
 *
 * Who calls it: qmgr, with a RouteSuccess from route.ts and a DeliveryJob built from the queue.
 * Failure behaviour: deliver() resolves with one Outcome per job recipient whatever the network
 * does; it rejects only for a job or route that cannot be sent (DeliveryError DELIVERY_BAD_JOB,
 * DELIVERY_BAD_ROUTE) and after close() (DELIVERY_AGENT_CLOSED). Events: diagnostics_channel
 * 'postwire:delivery:connect', '…:transaction', '…:framing-fault' ({ messageId, host, detail }).
 * TLS (delivery/tls-policy): each host gets a requirement: the route's `tls`, else the default
 * (`tls.defaultPolicy`, `may`), raised to `verify` by MTA-STS `enforce` and by REQUIRETLS. A
 * `may` host whose handshake fails is tried once more, in plain text, on a new connection (as
 * Postfix does); a policy that requires TLS never is. MTA-STS (delivery/mta-sts, MX routes only):
 * `enforce` skips MX hosts the policy does not list (noted) and defers with 4.7.5 when none is
 * left; `testing` delivers as usual and notes (and logs) what enforce would have refused.
 * Client AUTH: a route's credentials go with each connection, which sends them only inside TLS.
 * The history note names the TLS of each host that carried mail (version, cipher, verified).
 *
 * Trust: the job was validated by smtpd/cleanup; the peer is trusted in nothing.
 */
import { channel } from 'node:diagnostics_channel';
import { readFile } from 'node:fs/promises';
import { parseMailbox } from '../protocol/index.js';
import type { AttemptFact, ClientStepName, Mailbox, OutboundMessage, OutboundRecipient, RcptParams } from '../protocol/index.js';
import type { Logger } from '../obs/index.js';
import type { Clock } from '../util/index.js';
import { DeliveryError, hostLabel } from './connection.js';
import type { ConnectionSecurity, DeliveryJob, TransactionResult } from './connection.js';
import type { MtaStsLookup, MtaStsResolver } from './mta-sts.js';
import { mxMatches } from './mta-sts.js';
import type { RouteHost } from './mx.js';
import { DEFAULT_TLS_POLICY, requirementFor, requiresTls } from './tls-policy.js';
import type { TlsPolicy, TlsRequirement } from './tls-policy.js';
import type { LongLinePolicy } from './long-lines.js';
import { classifySession, classifyTransaction } from './outcome.js';
import type { Outcome } from './outcome.js';
import { ConnectionPool } from './pool.js';
import type { AcquireOptions, Lease } from './pool.js';
import type { RouteSuccess } from './route.js';
import { DELIVERY_CHANNELS } from '../obs/index.js';
import type { DeliveryDiagnostic, DeliveryTransactionEvent } from '../obs/index.js';

export interface DeliveryReport {
  /** `name[address]:port` of the host that decided (or the last one reached); '' if none was. */
  readonly nextHop: string;
  /** Exactly one per job recipient; `outcome.recipient` indexes job.recipients. */
  readonly outcomes: readonly Outcome[];
  /** Hosts tried and why they were passed over; framing-fault byte counts; long lines. */
  readonly note?: string;
}

export interface DeliveryAgent {
  deliver(route: RouteSuccess, job: DeliveryJob): Promise<DeliveryReport>;
  /** QUIT idle pooled connections once in-flight deliveries have finished. */
  close(): Promise<void>;
}

export interface DeliveryAgentOptions {
  /** Our EHLO name. */
  readonly hostname: string;
  readonly clock: Clock;
  readonly log: Logger;
  readonly connectTimeoutMs?: number;
  /** Pooled idle connection lifetime (default 10 s). */
  readonly idleTimeoutMs?: number;
  /** Transactions per connection (default 100). */
  readonly maxReusePerConnection?: number;
  /** A pooled connection idle at least this long answers RSET before reuse (default 2 s, DEFAULT_PROBE_AFTER_MS). */
  readonly probeAfterMs?: number;
  /** Overrides CLIENT_STEPS timeouts, for tests. */
  readonly timeouts?: Partial<Record<ClientStepName, number>>;
  /** BDAT chunk size in octets (default 64 KiB). */
  readonly chunkSize?: number;
  /** Lines over 998 octets to a peer without BINARYMIME: wrap (default), pass or bounce. */
  readonly longLines?: LongLinePolicy;
  /** Outbound TLS for routes that set no `tls` (default `may`). */
  readonly tlsPolicy?: TlsPolicy;
  /** Trust store (PEM) for `verify`, MTA-STS and REQUIRETLS; undefined: Node's default roots. */
  readonly tlsCa?: string;
  /** MTA-STS for MX routes; undefined: not used. */
  readonly mtaSts?: MtaStsResolver;
}

/** The diagnostics_channel names this module publishes on (defined in obs/channels). */
export { DELIVERY_CHANNELS };

/** What every channel carries (defined in obs/channels); the transaction channel adds destination and octets. */
export type { DeliveryDiagnostic, DeliveryTransactionEvent };

const connectChannel = channel(DELIVERY_CHANNELS.connect);
const transactionChannel = channel(DELIVERY_CHANNELS.transaction);
const faultChannel = channel(DELIVERY_CHANNELS.framingFault);

function publish(ch: ReturnType<typeof channel>, message: DeliveryDiagnostic): void {
  if (ch.hasSubscribers) ch.publish(message);
}

export function createDeliveryAgent(options: DeliveryAgentOptions): DeliveryAgent {
  return new Agent(options);
}

class Agent implements DeliveryAgent {
  readonly #log: Logger;
  readonly #pool: ConnectionPool;
  readonly #tlsPolicy: TlsPolicy;
  readonly #mtaSts: MtaStsResolver | undefined;
  readonly #inflight = new Set<Promise<unknown>>();
  #closing = false;

  constructor(options: DeliveryAgentOptions) {
    this.#log = options.log.child({ component: 'delivery' });
    this.#tlsPolicy = options.tlsPolicy ?? DEFAULT_TLS_POLICY;
    this.#mtaSts = options.mtaSts;
    const timeouts = options.connectTimeoutMs === undefined ? options.timeouts : { ...options.timeouts, connect: options.connectTimeoutMs };
    this.#pool = new ConnectionPool({
      hostname: options.hostname,
      clock: options.clock,
      log: this.#log,
      ...(timeouts !== undefined ? { timeouts } : {}),
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      ...(options.maxReusePerConnection !== undefined ? { maxReuse: options.maxReusePerConnection } : {}),
      ...(options.probeAfterMs !== undefined ? { probeAfterMs: options.probeAfterMs } : {}),
      ...(options.chunkSize !== undefined ? { chunkSize: options.chunkSize } : {}),
      ...(options.longLines !== undefined ? { longLines: options.longLines } : {}),
      ...(options.tlsCa !== undefined ? { tlsCa: options.tlsCa } : {}),
    });
  }

  deliver(route: RouteSuccess, job: DeliveryJob): Promise<DeliveryReport> {
    if (this.#closing) return Promise.reject(new DeliveryError('DELIVERY_AGENT_CLOSED', 'the delivery agent is closed'));
    const p = this.#deliver(route, job);
    this.#inflight.add(p);
    const done = (): void => void this.#inflight.delete(p);
    p.then(done, done);
    return p;
  }

  async close(): Promise<void> {
    this.#closing = true;
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    await this.#pool.close();
  }

  async #deliver(route: RouteSuccess, job: DeliveryJob): Promise<DeliveryReport> {
    const message = outboundMessage(job);
    if (route.hosts.length === 0) throw new DeliveryError('DELIVERY_BAD_ROUTE', `route ${route.destination} has no hosts`);
    const log = this.#log.child({ queueId: job.messageId, destination: route.destination });
    const outcomes: (Outcome | undefined)[] = job.recipients.map(() => undefined);
    const notes: string[] = [];
    let pending = job.recipients.map((_, i) => i);
    let nextHop = '';

    const sts = await this.#mtaStsFor(route, log);
    const enforce = sts?.policy?.mode === 'enforce' ? sts.policy : undefined;
    const testing = sts?.policy?.mode === 'testing' ? sts.policy : undefined;
    if (sts?.policy !== undefined && sts.policy.mode !== 'none') notes.push(sts.detail);
    let hosts = route.hosts;
    if (enforce !== undefined) {
      const unlisted = hosts.filter((h) => !mxMatches(h.name, enforce.mx));
      hosts = hosts.filter((h) => mxMatches(h.name, enforce.mx));
      for (const h of unlisted) notes.push(`${hostLabel(h)}: skipped, not listed by the MTA-STS policy of ${enforce.domain} (mx ${enforce.mx.join(', ')})`);
      if (hosts.length === 0) {
        const detail = `MTA-STS policy enforce for ${enforce.domain} (id ${enforce.id}) lists none of the MX hosts (${[...new Set(route.hosts.map((h) => h.name))].join(', ')}): not delivered`;
        log.warn({ policy: enforce.id }, detail);
        const outcomes = classifySession({ kind: 'tls', step: 'connect', failure: 'unverified', detail }, pending);
        return { nextHop: '', outcomes, note: [...notes, detail].join('; ') };
      }
    }

    for (const host of hosts) {
      const label = hostLabel(host);
      let { lease, security } = await this.#acquire(route.destination, host, this.#security(route, job, host, enforce !== undefined), notes, log);
      let decided: Outcome[];
      let retried = false;
      for (;;) {
        if (!lease.ok) {
          if (lease.reached) nextHop = label;
          decided = classifySession(lease.fact, pending);
          const why = decided[0]?.reply ?? '';
          notes.push(`${label}: ${lease.reached ? 'session refused' : 'not reached'}: ${why}`);
          publish(connectChannel, { messageId: job.messageId, host: label, detail: `failed: ${why}` });
          log.info({ host: label, reply: why }, 'host unusable');
          break;
        }
        nextHop = label;
        const connection = lease.connection;
        publish(connectChannel, { messageId: job.messageId, host: label, detail: lease.reused ? 'reused' : 'connected' });
        const sub: OutboundMessage = { ...message, recipients: pending.map((i) => message.recipients[i] as OutboundRecipient) };
        let result: TransactionResult;
        try {
          result = await connection.send(job, sub);
        } catch (err) {
          connection.destroy('delivery failed');
          throw err;
        }
        if (!retried && lease.reused && !lease.probed && result.lostBeforeFirstReply === true) {
          // Parked moments ago and reused without RSET, it died before the peer said anything
          // about this message (a FIN or a 421 crossing our MAIL): not an outcome, not history.
          // Once per host: the next lease is probed (an idle one answers RSET first) or new.
          retried = true;
          connection.destroy('lost before the reply to MAIL (reused without RSET)');
          log.debug({ host: label, detail: result.facts[0] }, 'reused connection lost before MAIL was answered; trying another');
          ({ lease, security } = await this.#acquire(route.destination, host, security, notes, log, { probe: true }));
          continue;
        }
        this.#pool.release(route.destination, connection);
        decided = classifyTransaction(result.facts, pending);
        if (connection.tls !== undefined || connection.tlsSummary !== 'no TLS') notes.push(`${label}: ${connection.tlsSummary}`);
        if (testing !== undefined) {
          const why = !mxMatches(host.name, testing.mx) ? `not listed (mx ${testing.mx.join(', ')})` : connection.tls === undefined ? 'no TLS' : connection.tls.verified ? undefined : connection.tls.unverifiedReason;
          if (why !== undefined) {
            notes.push(`MTA-STS testing for ${testing.domain}: enforce would refuse ${label}: ${why}`);
            log.warn({ host: label, policy: testing.id, reason: why }, 'MTA-STS testing: this delivery would fail under enforce');
          }
        }
        // Facts written before MAIL (long-lines bounce, unreadable spool) are Postwire's words.
        if (result.local) decided = decided.map((o) => ({ ...o, local: true }));
        // The window could not be marked (job.beforeEndOfData): end-of-data was not sent. A local
        // deferral of this attempt, not this host's fault; another host would need a mark too.
        if (result.windowError !== undefined) decided = decided.map((o) => (o.scope === 'destination' ? { ...o, scope: 'message' } : o));
        this.#notes(job, label, result, notes, log);
        const event: DeliveryTransactionEvent = { messageId: job.messageId, host: label, detail: summary(decided), destination: route.destination, octets: result.mode === 'none' ? 0 : result.bodyOctets };
        publish(transactionChannel, event);
        log.info({ host: label, outcomes: summary(decided), tls: connection.tls ?? 'none' }, 'transaction');
        break;
      }
      for (const o of decided) outcomes[o.recipient] = o;
      if (decided.some((o) => o.kind === 'held' || o.kind === 'ambiguous')) {
        const held = decided.some((o) => o.kind === 'held');
        notes.push(`${held ? 'held' : 'ambiguous'} at ${label}: no further host tried in this attempt`);
        if (!held) log.warn({ host: label }, 'ambiguous: connection lost after end-of-data, before its reply (RFC 1047)');
        break;
      }
      pending = decided.filter((o) => o.scope === 'destination').map((o) => o.recipient);
      if (pending.length === 0) break;
    }

    const final = outcomes.map((o, i) => {
      // Every recipient went to at least the first host, which decided each one of them.
      if (o === undefined) throw new Error(`invariant: recipient ${i} of ${job.messageId} has no outcome`);
      return o;
    });
    return notes.length > 0 ? { nextHop, outcomes: final, note: notes.join('; ') } : { nextHop, outcomes: final };
  }

  /**
   * A lease for `host` from the pool. `may` (as Postfix): a failed handshake is tried once more,
   * in plain text, on a new connection; the security that lease was acquired under comes back.
   */
  async #acquire(
    destination: string,
    host: RouteHost,
    security: ConnectionSecurity,
    notes: string[],
    log: Logger,
    options: AcquireOptions = {},
  ): Promise<{ lease: Lease; security: ConnectionSecurity }> {
    const lease = await this.#pool.acquire(destination, host, security, options);
    if (lease.ok || !lease.reached || !handshakeFailed(lease.fact) || requiresTls(security.tls) || security.auth !== undefined || security.tls.fallback === true) {
      return { lease, security };
    }
    const label = hostLabel(host);
    notes.push(`${label}: ${factText(lease.fact)}; retried in plain text (policy may)`);
    log.info({ host: label, reason: factText(lease.fact) }, 'TLS handshake failed; retrying in plain text (policy may)');
    const plain: ConnectionSecurity = { ...security, tls: { ...security.tls, fallback: true } };
    return { lease: await this.#pool.acquire(destination, host, plain, options), security: plain };
  }

  /** The TLS requirement and credentials for one host of this route, for this message. */
  #security(route: RouteSuccess, job: DeliveryJob, host: RouteHost, mtaStsEnforce: boolean): ConnectionSecurity {
    const r = route.route;
    const tls: TlsRequirement = requirementFor({
      ...(r.tls !== undefined ? { route: { policy: r.tls, pattern: r.pattern } } : {}),
      defaultPolicy: this.#tlsPolicy,
      name: host.name,
      mtaStsEnforce,
      requireTls: job.requireTls === true,
    });
    const auth = r.auth;
    if (auth === undefined) return { tls };
    const file = auth.passwordFile;
    // Read at each new connection: a corrected password file applies without a reload.
    const password = async (): Promise<string> => (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
    return { tls, auth: { user: auth.user, password } };
  }

  /** MTA-STS applies to MX routes only (a smart host is the operator's choice, not the domain's). */
  async #mtaStsFor(route: RouteSuccess, log: Logger): Promise<MtaStsLookup | undefined> {
    if (this.#mtaSts === undefined || route.route.nextHop.kind !== 'mx' || !route.destination.startsWith('mx:')) return undefined;
    const domain = route.destination.slice('mx:'.length);
    if (domain.startsWith('[')) return undefined;
    const found = await this.#mtaSts.policyFor(domain);
    log.debug({ mtaSts: found.detail }, 'MTA-STS');
    return found;
  }

  #notes(job: DeliveryJob, label: string, r: TransactionResult, notes: string[], log: Logger): void {
    if (r.framingFault !== undefined) {
      const counts = `read ${r.bodyOctets} of ${job.size} accepted octets from the spool${r.sha256 !== undefined ? `, sha256 ${r.sha256}` : ''}`;
      const detail = `${r.framingFault} (${counts})`;
      notes.push(`framing fault at ${label}: ${detail}`);
      publish(faultChannel, { messageId: job.messageId, host: label, detail });
      log.error({ host: label, reason: r.framingFault, bodyOctets: r.bodyOctets, acceptedOctets: job.size, sha256: r.sha256 }, 'framing fault: message held');
    }
    if (r.windowError !== undefined) {
      notes.push(`end-of-data not sent to ${label}: the delivery window could not be marked: ${r.windowError}`);
      log.warn({ host: label, err: r.windowError }, 'end-of-data not sent: window mark failed');
    }
    if (r.spoolError !== undefined) {
      notes.push(`spool read error while sending to ${label}: ${r.spoolError}`);
      log.error({ host: label, err: r.spoolError }, 'spool read error');
    }
    switch (r.longLineAction) {
      case 'wrapped':
        notes.push(`${r.longLines} line(s) longer than 998 octets wrapped with CRLF SP (${r.wrapBreaks ?? 0} break(s)) for ${label}, which lacks BINARYMIME`);
        break;
      case 'passed':
        notes.push(`${r.longLines} line(s) longer than 998 octets sent unchanged to ${label}, which lacks BINARYMIME (long-lines pass)`);
        break;
      case 'refused':
        notes.push(`lines longer than 998 octets and ${label} lacks BINARYMIME: bounced before MAIL (long-lines bounce)`);
        log.info({ host: label }, 'long lines: bounced by policy');
        break;
      case undefined:
        break;
    }
  }
}

/** The open failed in the TLS handshake (not a refused or missing STARTTLS): `may` may go plain. */
function handshakeFailed(fact: AttemptFact): boolean {
  return (fact.kind === 'tls' && fact.failure === 'handshake') || (fact.kind === 'interrupted' && fact.step === 'starttls');
}

function factText(fact: AttemptFact): string {
  return fact.kind === 'tls' ? fact.detail : fact.kind === 'interrupted' ? `${fact.cause} during STARTTLS${fact.detail !== undefined ? ` (${fact.detail})` : ''}` : fact.kind;
}

function summary(outcomes: readonly Outcome[]): string {
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
}

/** The job as the client session wants it; an envelope that cannot be sent is the caller's bug. */
export function outboundMessage(job: DeliveryJob): OutboundMessage {
  if (job.recipients.length === 0) throw new DeliveryError('DELIVERY_BAD_JOB', `message ${job.messageId} has no recipients`);
  if (!Number.isSafeInteger(job.size) || job.size < 0) throw new DeliveryError('DELIVERY_BAD_JOB', `message ${job.messageId}: size ${job.size}`);
  const sender = job.sender === '' ? null : mailbox(job, job.sender);
  const recipients = job.recipients.map((r): OutboundRecipient => {
    const params: { -readonly [K in keyof RcptParams]: RcptParams[K] } = {};
    if (r.notify !== undefined) params.notify = r.notify;
    if (r.orcpt !== undefined) {
      const semi = r.orcpt.indexOf(';');
      if (semi <= 0) throw new DeliveryError('DELIVERY_BAD_JOB', `message ${job.messageId}: ORCPT '${r.orcpt}' is not type;address`);
      params.orcpt = { addrType: r.orcpt.slice(0, semi), address: r.orcpt.slice(semi + 1) };
    }
    const m = mailbox(job, r.address);
    return Object.keys(params).length > 0 ? { mailbox: m, params } : { mailbox: m };
  });
  return {
    sender,
    recipients,
    body: job.body,
    smtputf8: job.smtputf8,
    size: job.size,
    ...(job.ret !== undefined ? { ret: job.ret } : {}),
    ...(job.envid !== undefined ? { envid: job.envid } : {}),
    ...(job.requireTls === true ? { requireTls: true } : {}),
  };
}

function mailbox(job: DeliveryJob, address: string): Mailbox {
  const parsed = parseMailbox(address);
  if (!parsed.ok) throw new DeliveryError('DELIVERY_BAD_JOB', `message ${job.messageId}: '${address}' is not a mailbox (${parsed.reason})`);
  return parsed.path;
}
