/**
 * @module obs/metrics
 * Prometheus metrics (prom-client), one registry per server (no process-global default
 * registry, so tests can run several servers in one process). What is counted:
 *   postwire_messages_accepted_total, postwire_accepted_bytes_total   (cleanup: after durable commit)
 *   postwire_recipients_total{state}       every recorded recipient outcome: delivered, deferred,
 *                                           bounced, expired, ambiguous, held
 *   postwire_ambiguous_total                RFC 1047 window losses (also in recipients_total)
 *   postwire_framing_faults_total           from the 'postwire:delivery:framing-fault' channel
 *   postwire_delivery_latency_seconds       accept → delivered, per recipient
 *   postwire_queue_recipients{state}        read from the store at scrape time
 *   postwire_oldest_message_age_seconds     read from the store at scrape time
 *   postwire_smtpd_sessions                 open inbound sessions, at scrape time
 *   postwire_smtpd_received_bytes_total     octets read from SMTP clients, at scrape time
 *   postwire_delivery_sent_bytes_total      message octets sent to next hops, from the
 *                                           'postwire:delivery:transaction' channel
 *   postwire_smtpd_limit_refusals_total{limit}
 *                                           clients refused by an abuse limit (smtpd/limits LIMIT_NAMES)
 *   postwire_smtpd_tarpit_delays_total, postwire_smtpd_tarpit_seconds_total
 *                                           replies the tarpit delayed, and the delay they got
 *   postwire_dkim_messages_total{domain,result}
 *                                           messages a DKIM key applied to (cleanup): signed, or
 *                                           failed (refused with 451); domain is the configured
 *                                           signing domain (d=), so the set is bounded by the config
 *   postwire_destination_rate_waits_total{destination}
 *                                           deliveries that could not start at once because their
 *                                           destination was over its rate (waited or given back),
 *                                           bounded like the series below
 *   postwire_destination_recipients_total{destination,state}
 *                                           outcomes per destination: the --metrics-destinations
 *                                           busiest by name, the rest as "other" (obs/top-n)
 * Label values are closed sets (states) or bounded (top N destinations + other), so the number of
 * series stays bounded whatever the traffic.
 *
 * diagnostics_channel is process-wide: one server per process (as `postwire serve` runs) counts
 * its own traffic; tests that run several servers in one process at once would see the union.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DELIVERY_CHANNELS, type DeliveryTransactionEvent } from './channels.js';
import { TopN } from './top-n.js';

const FRAMING_FAULT_CHANNEL = DELIVERY_CHANNELS.framingFault;
const TRANSACTION_CHANNEL = DELIVERY_CHANNELS.transaction;

export interface MetricsSources {
  /** Recipients per state over the whole queue. */
  countByState(): Promise<Partial<Record<string, number>>>;
  /** ms since the epoch of the oldest queued message, or undefined when the queue is empty. */
  oldestReceivedAt(): Promise<number | undefined>;
  openSessions(): number;
  /** Octets read from SMTP clients so far (all sessions, open and closed). */
  bytesReceived(): number;
  now(): number;
  /** How many destinations get their own label (--metrics-destinations). */
  readonly destinations: number;
}

export interface Metrics {
  messageAccepted(octets: number): void;
  /** `destination`: the route's destination (next-hop key), or the recipient's domain when unrouted. */
  recipientOutcome(state: string, receivedAt: number, now: number, destination?: string): void;
  /** An abuse limit refused a client; `limit` is one of smtpd's closed set of limit names. */
  limitRefused(limit: string): void;
  /** The tarpit delayed one reply by `ms`. */
  tarpitDelayed(ms: number): void;
  /** `domain`: the configured signing domain (d=), never the From: domain as written. */
  dkimMessage(domain: string, result: 'signed' | 'failed'): void;
  /** A delivery to `destination` waited for its rate limit. */
  rateWait(destination: string): void;
  /** Text exposition format for GET /metrics. */
  render(): Promise<string>;
  readonly contentType: string;
  close(): void;
}

export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'postwire_process_' });
  const accepted = new Counter({ name: 'postwire_messages_accepted_total', help: 'Messages accepted and durable (a 250 was sent)', registers: [registry] });
  const acceptedBytes = new Counter({ name: 'postwire_accepted_bytes_total', help: 'Octets of accepted messages as stored', registers: [registry] });
  const outcomes = new Counter({ name: 'postwire_recipients_total', help: 'Recorded recipient outcomes by state', labelNames: ['state'], registers: [registry] });
  const ambiguous = new Counter({ name: 'postwire_ambiguous_total', help: 'Recipients whose connection died after our end-of-data, before the reply (RFC 1047)', registers: [registry] });
  const dkim = new Counter({ name: 'postwire_dkim_messages_total', help: 'Messages a DKIM key applied to, by signing domain: signed, or failed (refused with 451)', labelNames: ['domain', 'result'], registers: [registry] });
  const framingFaults = new Counter({ name: 'postwire_framing_faults_total', help: 'Attempts stopped by the framing-fault guard (message held)', registers: [registry] });
  const latency = new Histogram({
    name: 'postwire_delivery_latency_seconds',
    help: 'Accept to delivered, per recipient',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600, 14_400, 86_400],
    registers: [registry],
  });
  new Gauge({
    name: 'postwire_queue_recipients',
    help: 'Recipients in the queue by state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [state, n] of Object.entries(await sources.countByState())) this.set({ state }, n ?? 0);
    },
  });
  new Gauge({
    name: 'postwire_oldest_message_age_seconds',
    help: 'Age of the oldest message in the queue (0 when empty)',
    registers: [registry],
    async collect() {
      const oldest = await sources.oldestReceivedAt();
      this.set(oldest === undefined ? 0 : Math.max(0, (sources.now() - oldest) / 1000));
    },
  });
  new Gauge({
    name: 'postwire_smtpd_sessions',
    help: 'Open inbound SMTP sessions',
    registers: [registry],
    collect() {
      this.set(sources.openSessions());
    },
  });
  const received = new Counter({
    name: 'postwire_smtpd_received_bytes_total',
    help: 'Octets read from SMTP clients (commands and message data)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.bytesReceived());
    },
  });
  void received;
  const limitRefusals = new Counter({ name: 'postwire_smtpd_limit_refusals_total', help: 'Clients refused by an abuse limit, by limit', labelNames: ['limit'], registers: [registry] });
  const tarpitDelays = new Counter({ name: 'postwire_smtpd_tarpit_delays_total', help: 'Replies delayed by the tarpit', registers: [registry] });
  const tarpitSeconds = new Counter({ name: 'postwire_smtpd_tarpit_seconds_total', help: 'Seconds replies were delayed by the tarpit', registers: [registry] });
  const sent = new Counter({ name: 'postwire_delivery_sent_bytes_total', help: 'Message octets sent to next hops (read from the spool into a transaction)', registers: [registry] });
  const perDestination = new TopN(sources.destinations);
  new Counter({
    name: 'postwire_destination_recipients_total',
    help: 'Recorded recipient outcomes per destination (the busiest N by name, the rest as "other") and state',
    labelNames: ['destination', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of perDestination.snapshot()) this.inc({ destination: c.destination, state: c.key }, c.value);
    },
  });
  const rateWaits = new TopN(sources.destinations);
  new Counter({
    name: 'postwire_destination_rate_waits_total',
    help: 'Deliveries that could not start at once because their destination was over its rate limit (the busiest N by name, the rest as "other")',
    labelNames: ['destination'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of rateWaits.snapshot()) this.inc({ destination: c.destination }, c.value);
    },
  });
  const onFramingFault = (): void => framingFaults.inc();
  const onTransaction = (message: unknown): void => {
    const octets = (message as Partial<DeliveryTransactionEvent>).octets;
    if (typeof octets === 'number' && octets > 0) sent.inc(octets);
  };
  subscribe(FRAMING_FAULT_CHANNEL, onFramingFault);
  subscribe(TRANSACTION_CHANNEL, onTransaction);
  return {
    messageAccepted(octets) {
      accepted.inc();
      acceptedBytes.inc(octets);
    },
    recipientOutcome(state, receivedAt, now, destination) {
      outcomes.inc({ state });
      if (destination !== undefined) perDestination.add(destination, state);
      if (state === 'ambiguous') ambiguous.inc();
      if (state === 'delivered') latency.observe(Math.max(0, (now - receivedAt) / 1000));
    },
    limitRefused(limit) {
      limitRefusals.inc({ limit });
    },
    tarpitDelayed(ms) {
      tarpitDelays.inc();
      tarpitSeconds.inc(ms / 1000);
    },
    dkimMessage(domain, result) {
      dkim.inc({ domain, result });
    },
    rateWait(destination) {
      rateWaits.add(destination, 'wait');
    },
    render: () => registry.metrics(),
    contentType: registry.contentType,
    close: () => {
      unsubscribe(FRAMING_FAULT_CHANNEL, onFramingFault);
      unsubscribe(TRANSACTION_CHANNEL, onTransaction);
    },
  };
}
