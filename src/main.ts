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
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultRate, planReload } from './config/index.js';
import type { Config, HostPort, LoadResult } from './config/index.js';
import { hostname as osHostname } from 'node:os';
import { DkimKeyring, createCleanup } from './cleanup/index.js';
import type { DkimSettings } from './cleanup/index.js';
import { dkimKeyWeakness } from './config/index.js';
import { MtaStsResolver, RouteTable, createDeliveryAgent, createDnsResolver, withSmarthost } from './delivery/index.js';
import type { Resolver } from './delivery/index.js';
import { QueueManager, createQueueControl } from './qmgr/index.js';
import type { QueueControl } from './qmgr/index.js';
import { openSqliteStore } from './queue/sqlite/index.js';
import { migratePostgres, openPostgresStore, PgDestinationRates, PgDestinationSlots, redact } from './queue/postgres/index.js';
import type { MigrateResult } from './queue/postgres/index.js';
import { AMBIGUOUS_AT_RESTART } from './queue/index.js';
import type { QueueId, QueueStore } from './queue/index.js';
import { Authenticator, InboundLimits, SmtpServer, TlsCredentials, relayPolicy, senderBinding } from './smtpd/index.js';
import type { LimitSettings, Policy } from './smtpd/index.js';
import { createLogger, createMetrics } from './obs/index.js';
import { createAdminApi, createOverview, createTimeseries, loadWebFiles, startAdminServer } from './admin/index.js';
import type { AdminServer, ExplainPorts } from './admin/index.js';
import type { AdminApiV1 } from './api/index.js';
import { explainRoutes, offlineTimeseries } from './admin-ports.js';
import type { Logger } from './obs/index.js';
import { cidrContains, compileCidrList, readUserFile, systemClock } from './util/index.js';
import type { Clock } from './util/index.js';

export interface Server {
  readonly listeners: readonly HostPort[];
  /** The implicit-TLS submission listener's bound address, when --submission is set. */
  readonly submission: HostPort | undefined;
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
function smtpdOptions(config: Config) {
  return {
    maxConnections: config.limits.maxConnections,
    maxConnectionsPerIp: config.limits.maxConnectionsPerIp,
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
      authWithoutTls: config.auth.withoutTls,
    },
  };
}

/**
 * A setting that names a file which cannot be used (certificate, key, user file): startServer
 * rejects with it, and `serve` exits 2 as for any configuration error.
 */
export class StartupConfigError extends Error {
  readonly code = 'POSTWIRE_CONFIG';
}


/** The relay rule, plus the MAIL FROM binding of authenticated users when it is on. */
function smtpdPolicy(config: Config, auth: () => Authenticator | undefined): Policy {
  const relay = relayPolicy({ relayFrom: config.relayFrom });
  if (config.auth.senderLoginMatch !== 'on') return relay;
  return senderBinding(relay, (user) => auth()?.sendersOf(user));
}

async function loadTls(config: Config): Promise<TlsCredentials | undefined> {
  const { cert, key } = config.tls;
  if (cert === undefined || key === undefined) return undefined;
  return TlsCredentials.load({ cert, key }).catch((err: unknown) => {
    throw new StartupConfigError(err instanceof Error ? err.message : String(err), { cause: err });
  });
}

async function loadAuthenticator(config: Config, clock: Clock, log: Logger): Promise<Authenticator | undefined> {
  const path = config.auth.users;
  if (path === undefined) return undefined;
  const read = await readUserFile(path);
  if (!read.ok) throw new StartupConfigError(`--users: ${read.errors.join('; ')} (create it with: postwire user add NAME --users ${path})`);
  return new Authenticator(read.users, config.auth, clock, log);
}

/** The abuse limits a Config gives (smtpd/limits). */
function limitSettings(config: Config): LimitSettings {
  const a = config.abuse;
  return {
    exempt: a.exempt,
    rates: {
      ipMessages: a.ipMessageRate,
      ipRecipients: a.ipRecipientRate,
      userMessages: a.userMessageRate,
      userRecipients: a.userRecipientRate,
      windowMs: a.rateWindow,
      maxKeys: a.rateMaxClients,
    },
    tarpit: { after: a.tarpitAfter, stepMs: a.tarpitDelay, maxMs: a.tarpitMaxDelay },
    logPerMinute: a.logRate,
  };
}

/** The signing keys a Config names, logged (never the key) with any weakness; undefined: none. */
function dkimSettings(config: Config, log: Logger): DkimSettings | undefined {
  for (const key of config.dkim) {
    log.info({ domain: key.domain, selector: key.selector, algorithm: key.algorithm, keyFile: key.keyFile, ...(key.bits !== undefined ? { bits: key.bits } : {}), subdomains: key.subdomains }, 'DKIM key loaded');
    const weakness = dkimKeyWeakness(key);
    if (weakness !== undefined) log.warn({ domain: key.domain, selector: key.selector }, weakness);
  }
  return config.dkim.length > 0 ? { keyring: new DkimKeyring(config.dkim), maxHeaderOctets: config.dkimMaxHeaderSize } : undefined;
}

export interface StartOptions {
  readonly onReady?: (info: { listeners: HostPort[]; submission?: HostPort }) => void;
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
      clock,
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
  // Files named by settings first: a bad certificate or user file must not leave a queue open.
  let tls = await loadTls(config);
  let authenticator = await loadAuthenticator(config, clock, log);
  const { store, slots, rates } = await openBackend(config, clock, log, node);
  const destinationRate = defaultRate(config.delivery);

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
  // Reload swaps the keys (and the header bound); a message being received keeps the ones it started with.
  let dkim = dkimSettings(config, log);
  const intake = createCleanup({
    store,
    hostname: config.hostname,
    clock,
    log,
    onQueued: (_id, size) => {
      metrics.messageAccepted(size);
      qmgr?.wake();
    },
    dkim: () => dkim,
    onDkim: (domain, result) => metrics.dkimMessage(domain, result),
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
  // MTA-STS asks the same --dns as routing, which SIGHUP may change: through a resolver that follows it.
  let currentResolver = createDnsResolver(config.dns ? { server: config.dns } : {});
  const followingResolver: Resolver = {
    resolveMx: (n) => currentResolver.resolveMx(n),
    resolve4: (n) => currentResolver.resolve4(n),
    resolve6: (n) => currentResolver.resolve6(n),
    resolveTxt: (n) => currentResolver.resolveTxt?.(n) ?? Promise.resolve([]),
  };
  const tlsCa = config.outboundTls.caFile !== undefined ? readFileSync(config.outboundTls.caFile, 'utf8') : undefined;
  const mtaSts = mtaStsFor(config, followingResolver, clock, tlsCa);
  const agent = createDeliveryAgent({
    hostname: config.hostname,
    clock,
    log,
    longLines: config.delivery.longLines,
    tlsPolicy: config.outboundTls.policy,
    ...(tlsCa !== undefined ? { tlsCa } : {}),
    ...(mtaSts !== undefined ? { mtaSts } : {}),
  });
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
  const currentAuth = (): Authenticator | undefined => authenticator;
  // One InboundLimits for the server's life: a reload changes its rules, never what clients spent.
  const limits = new InboundLimits(limitSettings(config), {
    now: () => clock.now(),
    log,
    onRefusal: (limit) => metrics.limitRefused(limit),
    onTarpit: (ms) => metrics.tarpitDelayed(ms),
  });
  const smtpd = new SmtpServer({
    options: {
      listen: config.listen,
      listenBacklog: config.limits.listenBacklog,
      ...(config.submission !== undefined ? { submission: config.submission } : {}),
      ...smtpdOptions(config),
    },
    policy: limits.withRateLimits(smtpdPolicy(config, currentAuth)),
    intake,
    clock,
    log,
    tls: () => tls?.context,
    auth: currentAuth,
    limits,
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
      explainRoute: explainRoutes(routes, () => current, mtaSts),
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
  const submission = smtpd.submissionAddress;
  log.info(
    { listeners, hostname: config.hostname, relayFrom: config.relayFrom, starttls: tls !== undefined, ...(submission ? { submission } : {}), auth: authenticator !== undefined ? { users: authenticator.userCount, withoutTls: config.auth.withoutTls } : false },
    'smtpd ready',
  );
  timeseries.start();
  if (config.delivery.mode === 'on') qmgr.start();
  else log.warn({}, 'delivery is off (--delivery off): accepted mail stays queued');
  if (config.delivery.mode === 'on') log.info({ nextHop: config.smarthost ? `smarthost ${config.smarthost.host}:${config.smarthost.port}` : `MX, port ${config.delivery.mxPort}`, dns: config.dns ?? 'system' }, 'delivery ready');
  if (admin) log.info({ admin: admin.address, token: config.adminToken !== undefined }, 'admin ready: the web page at /, /api/v1 and GET /metrics');
  options.onReady?.({ listeners, ...(submission ? { submission } : {}) });

  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let closing: Promise<void> | undefined;
  let current = config;
  /**
   * What a reload applies, in order, to the new configuration's live settings. The files named
   * by settings (certificate, key, user file) are re-read by reloadFiles on every SIGHUP instead,
   * whether or not their names changed: renewing a certificate changes the file, not the flag.
   */
  const reloaders: Array<(next: Config) => void> = [
    (next) => {
      limits.reconfigure(limitSettings(next));
      smtpd.reconfigure({ options: smtpdOptions(next), policy: limits.withRateLimits(smtpdPolicy(next, currentAuth)) });
    },
    (next) => {
      currentRoutes = routeTable(next);
      currentResolver = createDnsResolver(next.dns ? { server: next.dns } : {});
    },
    (next) => {
      if (JSON.stringify(next.dkim) !== JSON.stringify(current.dkim) || next.dkimMaxHeaderSize !== current.dkimMaxHeaderSize) dkim = dkimSettings(next, log);
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
  /**
   * SIGHUP: re-read the certificate and key (a new SecureContext for handshakes from now on;
   * sessions already in TLS keep theirs) and the user file. A file that fails keeps the running
   * one, and the log says why. Removing --tls-cert needs a restart (the submission listener and
   * open sessions depend on it); removing --users turns AUTH off for new sessions.
   */
  const reloadFiles = async (next: Config): Promise<void> => {
    const { cert, key } = next.tls;
    if (cert !== undefined && key !== undefined) {
      if (tls === undefined) {
        try {
          tls = await TlsCredentials.load({ cert, key });
          log.info({ cert, key }, 'tls certificate loaded: STARTTLS offered from now on');
        } catch (err) {
          log.error({ error: err instanceof Error ? err.message : String(err) }, 'tls certificate reload failed: STARTTLS stays off');
        }
      } else {
        const result = await tls.reload({ cert, key });
        if (result.ok) log.info({ cert, key }, 'tls certificate reloaded');
        else log.error({ error: result.error }, 'tls certificate reload failed: the running certificate stays');
      }
    } else if (tls !== undefined) {
      log.warn({ setting: 'tls-cert' }, 'config reload: removing the certificate needs a restart; the running one stays');
    }
    const users = next.auth.users;
    if (users === undefined) {
      if (authenticator !== undefined) log.info({}, 'AUTH turned off for new sessions (no --users)');
      authenticator = undefined;
      return;
    }
    // The failure limits are settings of their own: they apply even when the user file does not load.
    authenticator?.setLimits(next.auth);
    const read = await readUserFile(users);
    if (!read.ok) {
      for (const error of read.errors) log.error({ error }, 'user file reload failed: the running users stay');
      return;
    }
    if (authenticator === undefined) authenticator = new Authenticator(read.users, next.auth, clock, log);
    else authenticator.setUsers(read.users);
    log.info({ file: users, users: read.users.size }, 'user file reloaded');
  };
  return {
    listeners,
    submission,
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
      void reloadFiles(current).catch((err: unknown) => log.error({ err: err instanceof Error ? err.stack : String(err) }, 'reload of the TLS and user files failed'));
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

/** MTA-STS as configured (`--mta-sts on`, the default), sharing the trust store of `verify`. */
function mtaStsFor(config: Config, resolver: Resolver, clock: Clock, ca: string | undefined): MtaStsResolver | undefined {
  const t = config.outboundTls;
  if (t.mtaSts !== 'on') return undefined;
  return new MtaStsResolver({ resolver, clock, port: t.mtaStsPort, timeoutMs: t.mtaStsTimeout, maxBytes: t.mtaStsMaxSize, ...(ca !== undefined ? { ca } : {}) });
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
