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
 * Label values are a closed set (states), so cardinality stays bounded. Per-destination labels
 * and bytes out arrive with the operations issue.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DELIVERY_CHANNELS } from './channels.js';

const FRAMING_FAULT_CHANNEL = DELIVERY_CHANNELS.framingFault;

export interface MetricsSources {
  /** Recipients per state over the whole queue. */
  countByState(): Promise<Partial<Record<string, number>>>;
  /** ms since the epoch of the oldest queued message, or undefined when the queue is empty. */
  oldestReceivedAt(): Promise<number | undefined>;
  openSessions(): number;
  now(): number;
}

export interface Metrics {
  messageAccepted(octets: number): void;
  recipientOutcome(state: string, receivedAt: number, now: number): void;
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
  const onFramingFault = (): void => framingFaults.inc();
  subscribe(FRAMING_FAULT_CHANNEL, onFramingFault);
  return {
    messageAccepted(octets) {
      accepted.inc();
      acceptedBytes.inc(octets);
    },
    recipientOutcome(state, receivedAt, now) {
      outcomes.inc({ state });
      if (state === 'ambiguous') ambiguous.inc();
      if (state === 'delivered') latency.observe(Math.max(0, (now - receivedAt) / 1000));
    },
    render: () => registry.metrics(),
    contentType: registry.contentType,
    close: () => unsubscribe(FRAMING_FAULT_CHANNEL, onFramingFault),
  };
}
