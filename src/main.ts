/**
 * @module main
 * The composition root: the only module that picks concrete backends and wires everything.
 * Config in, a running relay out: the embedded queue (SQLite index + spool files), cleanup,
 * the relay-access policy and the SMTP listeners on the accepting side; routing (smart host or
 * MX through the configured DNS server), the delivery agent and the queue manager on the
 * delivering side. At startup it logs what queue recovery found ('queue opened'), and one
 * 'ambiguous' line per recipient the previous process left inside the RFC 1047 window.
 *
 * Startup failures (spool not writable, port in use) reject startServer() with an error that
 * says what failed; the CLI prints it and exits 1. close() is the graceful SIGTERM path: stop
 * listening, let sessions finish their transaction, stop claiming and let deliveries in flight
 * finish and record, then flush and close the queue.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultRate, planReload } from './config/index.js';
import type { Config, HostPort, LoadResult } from './config/index.js';
import { hostname as osHostname } from 'node:os';
import { createCleanup } from './cleanup/index.js';
import { RouteTable, createDeliveryAgent, createDnsResolver, withSmarthost } from './delivery/index.js';
import { QueueManager, createQueueControl } from './qmgr/index.js';
import type { QueueControl } from './qmgr/index.js';
import { openSqliteStore } from './queue/sqlite/index.js';
import { migratePostgres, openPostgresStore, PgDestinationRates, PgDestinationSlots, redact } from './queue/postgres/index.js';
import type { MigrateResult } from './queue/postgres/index.js';
import { AMBIGUOUS_AT_RESTART } from './queue/index.js';
import type { QueueId, QueueStore } from './queue/index.js';
import { SmtpServer, relayPolicy } from './smtpd/index.js';
import { createLogger, createMetrics } from './obs/index.js';
import { createAdminApi, createOverview, createTimeseries, loadWebFiles, startAdminServer } from './admin/index.js';
import type { AdminServer, ExplainPorts } from './admin/index.js';
import type { AdminApiV1 } from './api/index.js';
import { explainRoutes, offlineTimeseries } from './admin-ports.js';
import type { Logger } from './obs/index.js';
import { cidrContains, compileCidrList, systemClock } from './util/index.js';
import type { Clock } from './util/index.js';

export interface Server {
  readonly listeners: readonly HostPort[];
  /** The admin listener's bound address (GET /metrics), when --admin is not off. */
  readonly admin: HostPort | undefined;
  readonly store: QueueStore;
  /** Operator actions on queued mail (hold, release, retry, delete, bounce), as the admin API uses them. */
  readonly control: QueueControl;
  /** The admin API object the HTTP server serves (also usable in-process). */
  readonly api: AdminApiV1;
  /**
   * SIGHUP: apply a freshly loaded configuration. Live settings (schema `reload`) take effect for
   * new sessions and the next delivery attempts; the others are logged as needing a restart; a
   * failed load changes nothing and every error is logged.
   */
  reload(loaded: LoadResult): ReloadResult;
  /** The configuration in force (after reloads). */
  readonly config: Config;
  /** Graceful stop; idempotent. */
  close(reason: string): Promise<void>;
  /** Settles once the server has fully stopped. */
  readonly closed: Promise<void>;
}

export type ReloadResult =
  | { readonly ok: true; readonly live: readonly string[]; readonly restart: readonly string[] }
  | { readonly ok: false; readonly errors: readonly string[] };

/** The smtpd options a Config gives (at start, and again on each reload). */
function smtpdOptions(config: Config, relayNetworks: ReturnType<typeof compileCidrList>) {
  return {
    maxConnections: config.limits.maxConnections,
    maxConnectionsPerIp: config.limits.maxConnectionsPerIp,
    perIpExempt: (ip: string) => cidrContains(relayNetworks, ip),
    connection: {
      session: {
        hostname: config.hostname,
        maxRecipients: config.limits.maxRecipients,
        maxMessageSize: config.limits.maxMessageSize,
        maxBadCommands: config.limits.maxBadCommands,
      },
      maxCommandLine: config.limits.maxCommandLine,
      bareNewline: config.bareNewline,
      commandTimeout: config.timeouts.command,
      dataTimeout: config.timeouts.data,
    },
  };
}

export interface StartOptions {
  readonly onReady?: (info: { listeners: HostPort[] }) => void;
  readonly log?: Logger;
  readonly clock?: Clock;
  /** Uniform in [0, 1): MX shuffling and retry jitter (tests pass a seeded one). */
  readonly random?: () => number;
}

/** `postwire migrate`: create or upgrade the shared queue's schema (cli/ reaches the backend only through here). */
export async function migrateQueue(url: string, schema: string): Promise<MigrateResult> {
  return migratePostgres(url, schema, `migrate:${osHostname()}:${process.pid}`);
}

/** The chosen backend: the store, and the cluster-wide slots and rate buckets when the queue is shared. */
interface Backend {
  readonly store: QueueStore;
  readonly slots?: PgDestinationSlots;
  readonly rates?: PgDestinationRates;
}

/** --queue URL: the shared PostgreSQL queue; otherwise the embedded store in --spool. */
async function openBackend(config: Config, clock: Clock, log: Logger, node: string): Promise<Backend> {
  // Invariant 3's logged exception: recipients a process left inside the RFC 1047 window, found
  // at the next start (embedded) or when another node takes the dead holder's lease (shared).
  const logAmbiguous = async (store: QueueStore, found: ReadonlyArray<{ id: QueueId; recipients: readonly number[]; previousOwner?: string | null }>): Promise<void> => {
    for (const a of found) {
      const message = await store.getMessage(a.id).catch(() => undefined);
      for (const i of a.recipients) {
        log.warn({ queueId: a.id, recipient: i, rcpt: message?.recipients[i]?.address, reply: AMBIGUOUS_AT_RESTART.reply, ...(a.previousOwner ? { previousOwner: a.previousOwner } : {}) }, 'ambiguous');
      }
    }
  };
  if (config.queue !== undefined) {
    const url = config.queue;
    let shared: QueueStore | undefined;
    const store = await openPostgresStore({
      url,
      schema: config.queueSchema,
      node,
      connections: config.queueConnections,
      clock,
      onAmbiguous: (found) => void (shared ? logAmbiguous(shared, found) : undefined),
      onConnectionError: (err) => log.warn({ err: err.message }, 'queue connection lost; the pool reconnects on next use'),
    }).catch((err: unknown) => {
      throw new Error(`queue ${redact(url)}: ${err instanceof Error ? err.message : String(err)}`);
    });
    shared = store;
    const slots = new PgDestinationSlots({
      url,
      schema: config.queueSchema,
      node,
      onError: (err) => log.warn({ err: err.message }, 'destination slots: connection problem; retrying'),
    });
    const rates = new PgDestinationRates({
      url,
      schema: config.queueSchema,
      node,
      onError: (err) => log.warn({ err: err.message }, 'destination rates: connection problem; retrying'),
    });
    log.info({ queue: store.description, node }, 'queue opened');
    return { store, slots, rates };
  }
  await mkdir(config.spool, { recursive: true }).catch((err: unknown) => {
    throw new Error(`spool directory ${config.spool}: ${err instanceof Error ? err.message : String(err)}`);
  });
  const store = await openSqliteStore({ dir: config.spool, clock });
  log.info({ spool: config.spool, recovery: store.recovery }, 'queue opened');
  await logAmbiguous(store, store.recovery.ambiguous);
  return { store };
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<Server> {
  const log = options.log ?? createLogger({ level: config.logLevel, format: config.logFormat });
  const clock = options.clock ?? systemClock;
  const node = config.nodeName ?? `${osHostname()}:${process.pid}`;
  const { store, slots, rates } = await openBackend(config, clock, log, node);
  const destinationRate = defaultRate(config.delivery);

  const relayNetworks = compileCidrList(config.relayFrom);
  const random = options.random ?? Math.random;
  // The queue manager exists before cleanup so that a commit can wake it; it starts after listen.
  let qmgr: QueueManager | undefined;
  let openSessions = (): number => 0;
  let bytesReceived = (): number => 0;
  const metrics = createMetrics({
    countByState: () => store.countByState(),
    oldestReceivedAt: async () => {
      const heads = await Promise.all((['queued', 'deferred', 'ambiguous', 'held'] as const).map((state) => store.listMessages({ state, limit: 1 })));
      const times = heads.flatMap((list) => list.map((m) => m.receivedAt));
      return times.length > 0 ? Math.min(...times) : undefined;
    },
    openSessions: () => openSessions(),
    bytesReceived: () => bytesReceived(),
    now: () => clock.now(),
    destinations: config.metricsDestinations,
  });
  // The web page's charts: outcomes per minute (fed below, beside the metrics) and the queue depth.
  const timeseries = createTimeseries({ store, clock, log });
  const intake = createCleanup({
    store,
    hostname: config.hostname,
    clock,
    log,
    onQueued: (_id, size) => {
      metrics.messageAccepted(size);
      qmgr?.wake();
    },
  });
  const routeTable = (c: Config): RouteTable =>
    new RouteTable(withSmarthost(c.routes, c.smarthost), {
      resolver: createDnsResolver(c.dns ? { server: c.dns } : {}),
      random,
      mxPort: c.delivery.mxPort,
    });
  // Reload swaps the table; a delivery already routed keeps the route it got.
  let currentRoutes = routeTable(config);
  const routes = { resolveRoute: (domain: string) => currentRoutes.resolveRoute(domain) };
  const agent = createDeliveryAgent({ hostname: config.hostname, clock, log, longLines: config.delivery.longLines });
  qmgr = new QueueManager({
    options: {
      owner: node,
      hostname: config.hostname,
      retry: { retry: config.retry, maxAge: config.maxAge },
      ambiguous: config.delivery.ambiguous,
      destinationConcurrency: config.delivery.destinationConcurrency,
      maxInFlight: config.delivery.maxInFlight,
      leaseMs: config.delivery.leaseTime,
      pollMs: 1_000,
      delayWarning: config.delivery.delayWarning,
      keepDone: config.delivery.keepDone,
      ...(destinationRate !== undefined ? { destinationRate } : {}),
    },
    store,
    routes,
    delivery: agent,
    intake,
    clock,
    log,
    random,
    onOutcome: (state, receivedAt, now, destination) => {
      metrics.recipientOutcome(state, receivedAt, now, destination);
      timeseries.outcome(state, now);
    },
    ...(slots ? { slots } : {}),
    ...(rates ? { rates } : {}),
    onRateWait: (destination) => metrics.rateWait(destination),
  });
  const smtpd = new SmtpServer({
    options: { listen: config.listen, listenBacklog: config.limits.listenBacklog, ...smtpdOptions(config, relayNetworks) },
    policy: relayPolicy({ relayFrom: config.relayFrom }),
    intake,
    clock,
    log,
  });

  openSessions = () => smtpd.openConnections;
  bytesReceived = () => smtpd.bytesReceived;
  const control = createQueueControl({
    store, wake: () => qmgr?.wake(), intake, hostname: config.hostname, clock, random, log,
    onOutcome: (state, receivedAt, now, destination) => {
      metrics.recipientOutcome(state, receivedAt, now, destination);
      timeseries.outcome(state, now);
    },
  });
  const manager = qmgr;
  const api = createAdminApi({
    store,
    control,
    clock,
    retry: () => current.retry,
    explain: {
      explainRoute: explainRoutes(routes, () => current),
      window: (destination, concurrency) => manager.window(destination, concurrency),
      rate: async (destination, rate) => {
        const r = await manager.rate(destination, rate);
        return r && { perMinute: r.limit.perMinute, burst: r.limit.burst, source: r.fromRoute ? 'route' : 'default', ...(r.tokens !== undefined ? { tokens: r.tokens } : {}), waiting: r.waiting };
      },
    },
    overview: createOverview({ store, clock }),
    timeseries: () => timeseries.timeseries(),
  });
  let admin: AdminServer | undefined;
  let listeners: HostPort[];
  try {
    listeners = await smtpd.listen();
    if (config.admin !== 'off') {
      const web = await loadWebFiles();
      admin = await startAdminServer(config.admin, { metrics, log, api, web: web.serve, ...(config.adminToken !== undefined ? { token: config.adminToken } : {}) });
    }
  } catch (err) {
    await admin?.close();
    metrics.close();
    await smtpd.close(0);
    await store.close();
    await slots?.close();
    await rates?.close();
    throw new Error(`cannot listen: ${err instanceof Error ? err.message : String(err)}`);
  }
  log.info({ listeners, hostname: config.hostname, relayFrom: config.relayFrom }, 'smtpd ready');
  timeseries.start();
  if (config.delivery.mode === 'on') qmgr.start();
  else log.warn({}, 'delivery is off (--delivery off): accepted mail stays queued');
  if (config.delivery.mode === 'on') log.info({ nextHop: config.smarthost ? `smarthost ${config.smarthost.host}:${config.smarthost.port}` : `MX, port ${config.delivery.mxPort}`, dns: config.dns ?? 'system' }, 'delivery ready');
  if (admin) log.info({ admin: admin.address, token: config.adminToken !== undefined }, 'admin ready: the web page at /, /api/v1 and GET /metrics');
  options.onReady?.({ listeners });

  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let closing: Promise<void> | undefined;
  let current = config;
  /**
   * What a reload applies, in order, to the new configuration's live settings. TLS certificates
   * add theirs here when STARTTLS exists (re-read the files, swap the secure context: sessions
   * already in TLS keep theirs), so SIGHUP renews certificates without a restart.
   */
  const reloaders: Array<(next: Config) => void> = [
    (next) => smtpd.reconfigure({ options: smtpdOptions(next, compileCidrList(next.relayFrom)), policy: relayPolicy({ relayFrom: next.relayFrom }) }),
    (next) => {
      currentRoutes = routeTable(next);
    },
    (next) => {
      const rate = defaultRate(next.delivery);
      qmgr?.reconfigure({
        retry: { retry: next.retry, maxAge: next.maxAge },
        ambiguous: next.delivery.ambiguous,
        delayWarning: next.delivery.delayWarning,
        keepDone: next.delivery.keepDone,
        ...(rate !== undefined ? { destinationRate: rate } : {}),
      });
    },
  ];
  return {
    listeners,
    admin: admin?.address,
    store,
    control,
    api,
    closed,
    get config() {
      return current;
    },
    reload(loaded) {
      if (!loaded.ok) {
        for (const error of loaded.errors) log.error({ error }, 'config reload: error');
        log.error({ errors: loaded.errors.length }, 'config reload refused: the running configuration stays');
        return { ok: false, errors: loaded.errors };
      }
      let plan;
      try {
        plan = planReload(current, loaded.config);
        if (plan.live.length > 0) for (const apply of reloaders) apply(plan.config);
      } catch (err) {
        // e.g. a route table the loader let through but delivery refuses: keep what runs.
        const error = err instanceof Error ? err.message : String(err);
        log.error({ error }, 'config reload refused: the running configuration stays');
        for (const apply of reloaders) apply(current);
        return { ok: false, errors: [error] };
      }
      current = plan.config;
      for (const setting of plan.restart) log.warn({ setting }, 'config reload: this setting changes only at a restart');
      log.info({ live: plan.live, restartNeeded: plan.restart }, 'config reloaded');
      return { ok: true, live: plan.live, restart: plan.restart };
    },
    close(reason) {
      closing ??= (async () => {
        log.info({ reason, sessions: smtpd.openConnections }, 'shutting down');
        await smtpd.close(current.timeouts.shutdownGrace);
        await admin?.close();
        metrics.close();
        timeseries.stop();
        await qmgr?.stop();
        await agent.close();
        await store.close();
        await slots?.close();
        await rates?.close();
        log.info({}, 'stopped');
        resolveClosed();
      })();
      return closing;
    },
  };
}

/** The admin API in-process over a spool, for `postwire queue --spool DIR` and `explain` (offline). */
export interface OfflineAdmin {
  readonly api: AdminApiV1;
  close(): Promise<void>;
}

/**
 * Open the spool of `config` without starting anything else and return the same AdminApiV1 the
 * server serves, so the offline CLI has no second implementation. The embedded store holds its
 * spool exclusively, so this fails while a `postwire serve` runs on it: the error says so and
 * names --admin. Bounces queue their DSN in the spool; the next `serve` delivers it. Explain
 * resolves routes with the configured DNS; the windows are empty (nothing is delivering).
 */
export async function openOfflineAdmin(config: Config, options: { readonly log?: Logger; readonly clock?: Clock } = {}): Promise<OfflineAdmin> {
  // stderr: stdout carries the command's result (--json) and must stay parseable.
  const log = options.log ?? createLogger({ level: 'warn', destination: process.stderr });
  const clock = options.clock ?? systemClock;
  if (!existsSync(join(config.spool, 'index.sqlite'))) throw new Error(`no spool at ${config.spool} (no index.sqlite there)`);
  let store: QueueStore;
  try {
    store = await openSqliteStore({ dir: config.spool, clock });
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    if (text.includes('in use')) {
      throw new Error(`the spool ${config.spool} is in use by a running postwire serve: use --admin HOST:PORT to go through it`, { cause: err });
    }
    throw new Error(`cannot open the spool ${config.spool}: ${text}`, { cause: err });
  }
  const intake = createCleanup({ store, hostname: config.hostname, clock, log });
  const control = createQueueControl({ store, wake: () => undefined, intake, hostname: config.hostname, clock, random: Math.random, log });
  const routes = new RouteTable(withSmarthost(config.routes, config.smarthost), {
    resolver: createDnsResolver(config.dns ? { server: config.dns } : {}),
    mxPort: config.delivery.mxPort,
  });
  const explain: ExplainPorts = {
    explainRoute: explainRoutes(routes, () => config),
    window: (_destination, concurrency) => ({ concurrency: Math.max(1, concurrency ?? config.delivery.destinationConcurrency), active: 0, waiting: 0 }),
  };
  const api = createAdminApi({ store, control, clock, retry: () => config.retry, explain, overview: createOverview({ store, clock }), timeseries: offlineTimeseries() });
  return { api, close: () => store.close() };
}
