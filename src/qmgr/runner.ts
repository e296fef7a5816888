/**
 * @module qmgr/runner
 * The queue manager: claims due messages from the QueueStore with a lease, groups each one's due
 * recipients by destination (one transaction per destination), hands each group to delivery
 * inside that destination's concurrency window and, when it has a rate limit, with one of its
 * tokens (qmgr/rates: waiting for a token is not an attempt; a long wait gives the claim back
 * until a token is due), turns the outcomes into per-recipient states
 * with a next attempt time, queues the DSNs that are owed, and records the attempt.
 *
 * Order of effects, for "never lost": a DSN is committed to the queue BEFORE the attempt that
 * makes it owed is recorded. A crash between the two can only repeat the DSN, never lose it.
 * Leases are renewed while a delivery runs, so a slow delivery is never claimed twice.
 * Invariant 3: each group's job marks the RFC 1047 window (store.markInWindow under the current
 * lease) right before delivery sends end-of-data; if the process dies before recordAttempt, the
 * store's next open turns those recipients ambiguous and main logs them. A mark refused (lease
 * lost) means end-of-data is not sent and the group is deferred.
 *
 * Policy: deferred recipients come back after the `--retry` delay (qmgr/schedule); when that
 * would pass `--max-age` they expire and bounce with their last reply. `ambiguous` outcomes (the
 * connection died after our end-of-data, RFC 1047) follow `--ambiguous`: `retry` (the default: a
 * duplicate beats a loss) keeps them due after the next delay, `hold` parks them for an operator.
 * `held` outcomes (framing faults) are never retried automatically.
 *
 * Failure: a store error while recording is logged and the lease simply expires (the work is
 * done again: at-least-once, the ambiguous window again); a route or delivery exception for a
 * group defers that group with a local reason. Nothing here throws into the loop.
 */
import type { AttemptRecord, AttemptResult, AttemptState, ClaimedMessage, Envelope, EnvelopeRecipient, Lease, QueueStore, RecipientRecord, StoredMessage } from '../queue/index.js';
import { QueueError, isDue, readMessage } from '../queue/index.js';
import type { Outcome, RouteResult, RouteSuccess } from '../delivery/index.js';
import { buildDsn, streamDsn } from '../bounce/index.js';
import type { DsnRecipient } from '../bounce/index.js';
import type { MessageIntake } from '../cleanup/index.js';
import type { Logger } from '../obs/index.js';
import { dsnOriginal } from './dsn-original.js';
import { sleepOn } from '../util/index.js';
import type { Clock } from '../util/index.js';
import type { RateLimit } from '../config/index.js';
import { nextStep, retryDelay } from './schedule.js';
import type { RetryPolicy } from './schedule.js';
import { DestinationWindows } from './destinations.js';
import { ClusterWindows } from './cluster-windows.js';
import type { DestinationSlots, Windows } from './cluster-windows.js';
import { sweepFinished } from './retention.js';
import { LocalDestinationRates, RateGate } from './rates.js';
import type { DestinationRates } from './rates.js';

/** What qmgr needs of delivery: one attempt of one message's recipients to one destination. */
export interface DeliveryPort {
  deliver(route: RouteSuccess, job: DeliveryJob): Promise<{ readonly nextHop: string; readonly outcomes: readonly Outcome[]; readonly note?: string }>;
}

export interface DeliveryJob {
  readonly messageId: string;
  readonly sender: string;
  readonly body: Envelope['body'];
  readonly smtputf8: boolean;
  readonly ret?: NonNullable<Envelope['dsnRet']>;
  readonly envid?: string;
  readonly recipients: ReadonlyArray<{ readonly address: string; readonly notify?: EnvelopeRecipient['notify']; readonly orcpt?: string }>;
  readonly size: number;
  readonly openBody: () => AsyncIterable<Uint8Array>;
  /** Awaited by delivery right before end-of-data; rejecting stops the transaction before it (see delivery/connection). */
  readonly beforeEndOfData?: () => Promise<void>;
  /** RFC 8689: the message came with REQUIRETLS (Envelope.requireTls). */
  readonly requireTls?: true;
}

/** What qmgr needs of routing. */
export interface RoutePort {
  resolveRoute(domain: string): Promise<RouteResult>;
}

export interface QmgrOptions {
  /** Who holds the leases: unique per process. */
  readonly owner: string;
  readonly hostname: string;
  readonly retry: RetryPolicy;
  readonly ambiguous: 'retry' | 'hold';
  /** Concurrent deliveries per destination unless its route says otherwise. */
  readonly destinationConcurrency: number;
  /**
   * Deliveries at once over all destinations. Claimed messages waiting for a busy destination's
   * window do not count against it (up to CLAIMED_PER_DELIVERY times as many may wait), so one
   * slow destination holds its own window and no more: the others keep flowing.
   */
  readonly maxInFlight: number;
  /** How long a claim is held before another claimer may take it; renewed at a third of it. */
  readonly leaseMs: number;
  /** How often to look for due work when nothing woke us. */
  readonly pollMs: number;
  /** Warn the sender (a "delayed" DSN, once) when a message waits longer than this; undefined: never. */
  readonly delayWarning?: number;
  /** Purge messages whose recipients are all final once they are this old (--keep-done). */
  readonly keepDone: number;
  /** Deliveries started per minute to a destination whose route sets no rate; undefined: unlimited. */
  readonly destinationRate?: RateLimit;
}

/** The part of QmgrOptions a SIGHUP may change while deliveries run. */
export type ReloadablePolicy = Pick<QmgrOptions, 'retry' | 'ambiguous' | 'delayWarning' | 'keepDone' | 'destinationRate'>;

/**
 * A destination whose window already has this many messages waiting takes no more: further
 * claims for it are given back (not before BACKOFF_MS, no attempt counted, so they go behind
 * the mail that is due now), and a deep backlog for one destination cannot fill every claim and
 * starve the others. The bound is the larger of WAITING_PER_SLOT per window slot and
 * DESTINATION_SHARE of the claim capacity: a destination that keeps up (the usual smart host)
 * keeps a deep enough local queue to stay busy between claims, and the others keep the rest.
 */
const WAITING_PER_SLOT = 2;
const DESTINATION_SHARE = 0.5;
const BACKOFF_MS = 1_000;
/**
 * A group whose destination's rate would keep it waiting longer than this is not held: its claim
 * goes back, due again when a token should be there (RateGate.reserve spaces those times one
 * token apart). Shorter waits are waited out in process, so the gate always has a few groups
 * ready between two claims (the loop polls every pollMs). A message that also has a group able
 * to go now keeps its claim and its rate-limited groups wait (renewing the lease).
 */
const RATE_WAIT_MAX_MS = 2_000;
/**
 * Giving claims back is churn (a claim and a release each). Per poll interval the loop walks the
 * due queue freely until this many claims were given back (so mail for other destinations
 * behind a backlog is reached within about backlog / WALK_BUDGET polls); past it, it claims only
 * as many as deliveries ended since its last claim, and waits for the next one to end.
 */
const WALK_BUDGET_SHARE = 1;

/** How many times a failed recordAttempt is tried before the run gives up (and its lease expires). */
const RECORD_TRIES = 5;

/** Claimed messages (delivering or waiting for a window) per delivery slot. */
const CLAIMED_PER_DELIVERY = 10;

/** The reply of a group that a draining node did not start. */
const NOT_STARTED = '451 4.3.2 not attempted: the relay is shutting down';

/** The history note that marks a message whose delay warning went out. */
const DELAY_NOTE = 'delay DSN sent';

export interface QmgrDeps {
  readonly options: QmgrOptions;
  readonly store: QueueStore;
  readonly routes: RoutePort;
  readonly delivery: DeliveryPort;
  readonly intake: MessageIntake;
  readonly clock: Clock;
  readonly log: Logger;
  readonly random: () => number;
  /** Told of every recorded recipient outcome (metrics), with the recipient's destination. */
  readonly onOutcome?: (state: string, receivedAt: number, now: number, destination: string) => void;
  /** Cluster-wide destination slots (a shared queue); absent: the windows are this process's alone. */
  readonly slots?: DestinationSlots;
  /** Cluster-wide rate buckets (a shared queue); absent: buckets in this process. */
  readonly rates?: DestinationRates;
  /** A delivery could not start at once because its destination was over its rate (metrics). */
  readonly onRateWait?: (destination: string) => void;
}

interface Group {
  readonly route: RouteSuccess;
  /** Indices into message.recipients. */
  readonly indices: number[];
}

interface Decided {
  readonly results: AttemptResult[];
  readonly nextHops: string[];
  readonly notes: string[];
  /** Outcome per recipient index, for DSNs. */
  readonly outcomes: Map<number, Outcome>;
  /** Retry schedules of the routes that were used (a route may override --retry). */
  readonly retries: Array<readonly number[]>;
  /** Destination per recipient index: the route's, or the domain when it could not be routed. */
  readonly destinations: Map<number, string>;
}

export class QueueManager {
  private readonly windows: Windows;
  private readonly rates: RateGate;
  private readonly rateBuckets: DestinationRates;
  /** One key, 'all': the global cap on deliveries, taken after the destination's window. */
  private readonly deliverySlots: DestinationWindows;
  /** Messages claimed and not yet recorded (delivering, or waiting for a window). */
  private inFlight = 0;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private sweeps: Promise<void> | undefined;
  private stopSweep: (() => void) | undefined;
  private wakeUp: (() => void) | undefined;
  private readonly active = new Set<Promise<void>>();
  /** Claims given back (destination full) in the current poll interval: the churn budget. */
  private walk = { since: 0, givenBack: 0 };
  /** Runs that ended (not given back) since the last claim: the claim size while churning. */
  private endedSinceClaim = 0;

  /** The retry and retention policy: replaced by reconfigure() (SIGHUP), read at each use. */
  private policy: ReloadablePolicy;

  constructor(private readonly deps: QmgrDeps) {
    this.policy = {
      retry: deps.options.retry,
      ambiguous: deps.options.ambiguous,
      keepDone: deps.options.keepDone,
      ...(deps.options.delayWarning !== undefined ? { delayWarning: deps.options.delayWarning } : {}),
      ...(deps.options.destinationRate !== undefined ? { destinationRate: deps.options.destinationRate } : {}),
    };
    this.windows = deps.slots
      ? new ClusterWindows(deps.options.destinationConcurrency, deps.slots)
      : new DestinationWindows(deps.options.destinationConcurrency);
    this.deliverySlots = new DestinationWindows(deps.options.maxInFlight);
    this.rateBuckets = deps.rates ?? new LocalDestinationRates(deps.clock);
    this.rates = new RateGate(this.rateBuckets, deps.clock, (d) => deps.onRateWait?.(d), (err) => {
      deps.log.warn({ err: String(err) }, 'destination rate: the bucket could not be read; no delivery starts until it can');
    });
  }

  /**
   * SIGHUP's live reload: the next attempt decided uses the new retry schedule, max age,
   * ambiguous policy, delay warning and default rate (routes bring their own rates, and
   * main swaps the route table), and the next sweep the new --keep-done. Windows, slots
   * and leases are sized at start and keep their values (those settings need a restart).
   */
  reconfigure(policy: ReloadablePolicy): void {
    this.policy = policy;
    this.rates.nudge();
  }

  start(): void {
    this.loopDone ??= this.loop();
    this.sweeps ??= this.sweepLoop();
  }

  /** The retention sweep: finished mail older than --keep-done leaves the spool. */
  private async sweepLoop(): Promise<void> {
    const { store, clock, options, log } = this.deps;
    const every = Math.min(60_000, Math.max(100, Math.floor(options.keepDone / 4)));
    while (!this.stopping) {
      const sleep = sleepOn(clock, every);
      this.stopSweep = sleep.cancel;
      await sleep.done;
      if (this.stopping) return;
      try {
        const keepDone = this.policy.keepDone;
        const purged = await sweepFinished(store, clock.now() - keepDone);
        if (purged > 0) log.info({ purged, keepDone }, 'finished mail purged');
      } catch (err) {
        log.error({ err: String(err) }, 'retention sweep failed');
      }
    }
  }

  /**
   * One destination's delivery window now (for `explain`): its limit (the route's own, else
   * --destination-concurrency), deliveries in progress, and deliveries waiting for a slot.
   */
  window(destination: string, routeConcurrency?: number): { concurrency: number; active: number; waiting: number } {
    return {
      concurrency: Math.max(1, routeConcurrency ?? this.deps.options.destinationConcurrency),
      active: this.windows.activeFor(destination),
      waiting: this.windows.waitingFor(destination),
    };
  }

  /**
   * One destination's rate limit now (for `explain`): the limit that applies (the route's own,
   * else --destination-rate; undefined when unlimited), the tokens in its bucket (cluster-wide on
   * a shared queue) and this node's deliveries waiting for one.
   */
  async rate(destination: string, routeRate?: RateLimit | 'unlimited'): Promise<{ limit: RateLimit; fromRoute: boolean; tokens?: number; waiting: number } | undefined> {
    const limit = this.rateOf(routeRate);
    if (limit === undefined) return undefined;
    // A bucket that cannot be read (the shared queue's database is away) is left out, not an error: explain still answers.
    const tokens = await this.rateBuckets.peek(destination, limit).catch(() => undefined);
    return { limit, fromRoute: routeRate !== undefined, ...(tokens !== undefined ? { tokens } : {}), waiting: this.rates.waitingFor(destination) };
  }

  private rateOf(routeRate: RateLimit | 'unlimited' | undefined): RateLimit | undefined {
    return routeRate === 'unlimited' ? undefined : routeRate ?? this.policy.destinationRate;
  }

  /** New mail was queued: look for due work now instead of at the next poll. */
  wake(): void {
    this.wakeUp?.();
  }

  /** Stop claiming, let deliveries in flight finish and record, then resolve. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.rates.close();
    this.wake();
    this.stopSweep?.();
    await this.loopDone;
    await this.sweeps;
    await Promise.all([...this.active]);
  }

  private async loop(): Promise<void> {
    const { store, options, clock, log } = this.deps;
    const capacity = options.maxInFlight * CLAIMED_PER_DELIVERY;
    while (!this.stopping) {
      const room = capacity - this.inFlight;
      const now = clock.now();
      if (now - this.walk.since >= options.pollMs) this.walk = { since: now, givenBack: 0 };
      const churning = this.walk.givenBack >= capacity * WALK_BUDGET_SHARE;
      let limit = Math.min(room, 100);
      if (churning) limit = Math.min(limit, Math.max(2, this.endedSinceClaim));
      this.endedSinceClaim = 0;
      let claimed: ClaimedMessage[] = [];
      if (room >= 2) {
        try {
          claimed = await store.claimDue({ now, limit, leaseMs: options.leaseMs, owner: options.owner });
        } catch (err) {
          log.error({ err: String(err) }, 'claiming due work failed');
        }
      }
      for (const c of claimed) this.launch(c);
      if (claimed.length === 0 || room < 2 || churning) await this.sleep(options.pollMs);
    }
  }

  private launch(claim: ClaimedMessage): void {
    this.inFlight++;
    const run = this.process(claim)
      .catch((err: unknown) => {
        this.deps.log.error({ err: err instanceof Error ? err.stack : String(err), queueId: claim.message.id }, 'delivery run failed');
        return 'done' as const;
      })
      .then((ended) => {
        this.inFlight--;
        this.active.delete(run);
        // A claim given back frees nothing a new claim could use: only a run that ended wakes the loop.
        if (ended === 'given-back') this.walk.givenBack++;
        else {
          this.endedSinceClaim++;
          this.wake();
        }
      });
    this.active.add(run);
  }

  private async sleep(ms: number): Promise<void> {
    const sleep = sleepOn(this.deps.clock, ms);
    // Wakes come in bursts (a commit batch, many deliveries ending in one turn): they share
    // one claim at the end of this event-loop turn instead of one small claim each.
    this.wakeUp = () => {
      this.wakeUp = undefined;
      setImmediate(sleep.cancel);
    };
    await sleep.done;
    this.wakeUp = undefined;
  }

  /** One claimed message: route, deliver per destination, decide, owe DSNs, record; or give it back. */
  private async process(claim: ClaimedMessage): Promise<'done' | 'given-back'> {
    const { store, clock, options, log } = this.deps;
    let lease = claim.lease;
    const renew = clock.setTimer(Math.max(1, Math.floor(options.leaseMs / 3)), () => void renewLoop());
    const renewLoop = async (): Promise<void> => {
      try {
        const renewed = await store.renewLease(lease, clock.now() + options.leaseMs);
        if (renewed) {
          lease = renewed;
          renew.refresh();
        } else log.warn({ queueId: claim.message.id }, 'lease lost while delivering');
      } catch (err) {
        // A store hiccup is not a lost lease: try again at the next third.
        log.error({ queueId: claim.message.id, err: String(err) }, 'lease renewal failed; retrying');
        renew.refresh();
      }
    };
    try {
      const message = claim.message;
      const due = message.recipients.flatMap((r, i) => (isDue(r.state) ? [i] : []));
      if (due.length === 0) {
        await store.releaseLease(lease);
        return 'done';
      }
      const decided = await this.attempt(message, due, () => lease);
      if ('comeBackAt' in decided) {
        await store.releaseLease(lease, decided.comeBackAt);
        return 'given-back';
      }
      // Draining: nothing of this message was started, so the claim goes back (due at once, for
      // another node) instead of a deferral being recorded.
      if (this.stopping && decided.nextHops.length === 0 && decided.results.every((r) => r.reply === NOT_STARTED)) {
        await store.releaseLease(lease);
        return 'given-back';
      }
      const record = this.schedule(message, claim.attempts, decided);
      const dsnNote = await this.oweDsns(message, decided, record.results, record.nextAttemptAt);
      if (dsnNote) decided.notes.push(dsnNote);
      const attemptAt = clock.now();
      const nextHop = decided.nextHops.join(', ');
      const note = decided.notes.length > 0 ? decided.notes.join('; ') : undefined;
      await this.recordWithRetry(() => lease, {
        at: attemptAt,
        nextHop,
        results: record.results,
        ...(record.nextAttemptAt !== undefined ? { nextAttemptAt: record.nextAttemptAt } : {}),
        ...(note !== undefined ? { note } : {}),
      }, message.id);
      const recordedAt = clock.now();
      // One log line per recipient, carrying the attempt record's own fields (queue/store
      // AttemptRecord: at, nextHop, the result, nextAttemptAt, note), so the log and the
      // message's history tell the same events.
      for (const r of record.results) {
        const destination = decided.destinations.get(r.recipient) ?? '';
        this.deps.onOutcome?.(r.state, message.receivedAt, recordedAt, destination);
        log.info({
          queueId: message.id,
          at: attemptAt,
          nextHop,
          recipient: r.recipient,
          rcpt: message.recipients[r.recipient]?.address,
          state: r.state,
          reply: r.reply,
          destination,
          ...(record.nextAttemptAt !== undefined ? { nextAttemptAt: record.nextAttemptAt } : {}),
          ...(note !== undefined ? { note } : {}),
        }, 'attempt');
      }
      return 'done';
    } finally {
      renew.cancel();
    }
  }

  /**
   * The attempt must be recorded: a run that delivered and then failed to record would be done
   * again when its lease expires. Store errors are retried (the lease is renewed meanwhile); a
   * lost lease is final (someone else owns the message now).
   */
  private async recordWithRetry(lease: () => Lease, record: AttemptRecord, id: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.store.recordAttempt(lease(), record);
        return;
      } catch (err) {
        const lost = err instanceof QueueError && (err.code === 'QUEUE_LEASE_LOST' || err.code === 'QUEUE_CLOSED');
        if (lost || attempt >= RECORD_TRIES) throw err;
        this.deps.log.error({ queueId: id, err: String(err), attempt }, 'recording the attempt failed; retrying');
        await new Promise<void>((resolve) => this.deps.clock.setTimer(attempt * 1_000, resolve));
      }
    }
  }

  /** Route every due recipient and deliver each destination's group; one outcome per recipient. */
  private async attempt(message: StoredMessage, due: readonly number[], lease: () => Lease): Promise<Decided | { comeBackAt: number }> {
    const decided: Decided = { results: [], nextHops: [], notes: [], outcomes: new Map(), retries: [], destinations: new Map() };
    const groups = new Map<string, Group>();
    const routes = new Map<string, RouteResult>();
    for (const index of due) {
      const address = message.recipients[index]?.address ?? '';
      const domain = address.slice(address.lastIndexOf('@') + 1);
      let route = routes.get(domain.toLowerCase());
      if (!route) {
        route = await this.deps.routes.resolveRoute(domain);
        routes.set(domain.toLowerCase(), route);
      }
      decided.destinations.set(index, route.ok ? route.destination : domain.toLowerCase());
      if (!route.ok) {
        const code = route.permanent ? 550 : 451;
        decided.outcomes.set(index, { recipient: index, kind: route.permanent ? 'bounced' : 'deferred', scope: 'destination', reply: `${code} ${route.status} ${route.reason}`, enhanced: route.status, local: true });
        continue;
      }
      if (route.route.retry && route.route.retry.length > 0) decided.retries.push(route.route.retry);
      const group = groups.get(route.destination) ?? { route, indices: [] };
      group.indices.push(index);
      groups.set(route.destination, group);
    }
    if (decided.outcomes.size === 0 && groups.size > 0) {
      const comeBackAt = this.notNow([...groups.values()]);
      if (comeBackAt !== undefined) return { comeBackAt };
    }
    const alone = groups.size === 1;
    await Promise.all([...groups.values()].map((g) => this.deliverGroup(message, g, decided, lease, alone)));
    for (const index of due) {
      const outcome = decided.outcomes.get(index);
      if (outcome) decided.results.push({ recipient: index, state: outcome.kind as AttemptState, reply: outcome.reply });
    }
    return decided;
  }

  /**
   * When every group of a claimed message would only wait (its destination's window has a
   * backlog, or its rate would keep it longer than RATE_WAIT_MAX_MS), the time to come back:
   * the soonest any of them could go. Undefined when some group can go now (then all are held).
   */
  private notNow(groups: readonly Group[]): number | undefined {
    const now = this.deps.clock.now();
    const rated = groups.map((g) => ({ g, limit: this.rateOf(g.route.route.rate) }));
    // Groups waiting for the window will take their tokens first: they count as ahead.
    const ahead = (g: Group): number => this.windows.waitingFor(g.route.destination);
    const waits = rated.map(({ g, limit }) => (this.backlogged(g) ? 'window' : limit !== undefined && this.rates.estimate(g.route.destination, limit, ahead(g)) > RATE_WAIT_MAX_MS ? 'rate' : 'go'));
    if (waits.some((w) => w === 'go')) return undefined;
    // The message comes back once, at the soonest: only that group's come-back slot is reserved
    // (reserving one per group would push the other destinations' later give-backs out for nothing).
    const candidates = rated.map(({ g, limit }, i) =>
      waits[i] === 'rate' && limit !== undefined
        ? { at: this.rates.slotAt(g.route.destination, limit, ahead(g)), reserve: () => this.rates.reserve(g.route.destination, limit, ahead(g)) }
        : { at: now + BACKOFF_MS, reserve: undefined });
    const soonest = candidates.reduce((a, b) => (b.at < a.at ? b : a));
    return soonest.reserve?.() ?? soonest.at;
  }

  private backlogged(group: Group): boolean {
    const { options } = this.deps;
    const limit = Math.max(1, group.route.route.concurrency ?? options.destinationConcurrency);
    const share = Math.floor(options.maxInFlight * CLAIMED_PER_DELIVERY * DESTINATION_SHARE);
    return this.windows.waitingFor(group.route.destination) >= Math.max(WAITING_PER_SLOT * limit, share);
  }

  /** `lease` reads the current lease (renewals replace it) when the window is marked. */
  private async deliverGroup(message: StoredMessage, group: Group, decided: Decided, lease: () => Lease, alone: boolean): Promise<void> {
    // The destination's window first, then a global slot: a message waiting on a busy
    // destination holds no slot another destination could use.
    // Then a token of its rate, still before the global slot: a destination over its rate keeps
    // its own window busy and nothing else. The token is taken after the window, so deliveries
    // start at the rate (tokens taken while waiting for a window would start in a bunch).
    const releaseWindow = await this.windows.acquire(group.route.destination, group.route.route.concurrency);
    const token = await this.rates.acquire(group.route.destination, () => this.rateOf(group.route.route.rate));
    const releaseSlot = token ? await this.deliverySlots.acquire('all') : () => undefined;
    const release = (): void => {
      releaseSlot();
      releaseWindow();
    };
    if (this.stopping || !token) {
      // Shutting down: a group that was still waiting for its window is not started.
      release();
      for (const index of group.indices) {
        decided.outcomes.set(index, { recipient: index, kind: 'deferred', scope: 'destination', reply: NOT_STARTED, enhanced: '4.3.2', local: true });
      }
      return;
    }
    try {
      const env = message.envelope;
      const recipients = group.indices.map((i) => message.recipients[i] as RecipientRecord);
      const report = await this.deps.delivery.deliver(group.route, {
        messageId: message.id,
        sender: env.sender,
        body: env.body,
        smtputf8: env.smtputf8,
        ...(env.dsnRet ? { ret: env.dsnRet } : {}),
        ...(env.dsnEnvid !== undefined ? { envid: env.dsnEnvid } : {}),
        ...(env.requireTls === true ? { requireTls: true } : {}),
        recipients: recipients.map((r) => ({
          address: r.address,
          ...(r.notify ? { notify: r.notify } : {}),
          ...(r.orcpt ? { orcpt: r.orcpt } : {}),
        })),
        // size counts envelope.prepend, and readMessage sends it first: the framing-fault guard
        // (octets read vs size, sha256) covers the DKIM-Signature like every other byte.
        size: message.size,
        openBody: () => readMessage(this.deps.store, message),
        // Invariant 3: the window is marked before end-of-data goes out; a lost lease refuses.
        beforeEndOfData: () => this.deps.store.markInWindow(lease(), group.indices, this.deps.clock.now()),
      });
      if (report.nextHop) decided.nextHops.push(report.nextHop);
      if (report.note) decided.notes.push(report.note);
      const delivered: number[] = [];
      for (const o of report.outcomes) {
        const index = group.indices[o.recipient];
        if (index === undefined) continue;
        decided.outcomes.set(index, { ...o, recipient: index });
        if (o.kind === 'delivered') delivered.push(index);
      }
      // Settle deliveries now: other destinations of this message (or its DSNs) may take long,
      // and a crash meanwhile must neither redeliver these nor call them ambiguous. A message's
      // only group, wholly delivered with no success DSN owed, owes no DSN at all and goes
      // straight on to its record (no I/O in between), so there the extra transaction buys nothing.
      const recordFollows = alone && delivered.length === group.indices.length && delivered.every((i) => !wantsSuccessDsn(message.recipients[i]));
      if (delivered.length > 0 && !recordFollows) {
        await this.deps.store.settleDelivered(lease(), delivered).catch((err: unknown) => {
          this.deps.log.warn({ queueId: message.id, err: String(err) }, 'settling delivered recipients failed; the attempt record will');
        });
      }
    } catch (err) {
      this.deps.log.error({ err: err instanceof Error ? err.stack : String(err), queueId: message.id, destination: group.route.destination }, 'delivery failed');
      for (const index of group.indices) {
        decided.outcomes.set(index, { recipient: index, kind: 'deferred', scope: 'destination', reply: '451 4.3.0 local error during delivery', enhanced: '4.3.0', local: true });
      }
    } finally {
      release();
    }
  }

  /** Outcomes → recipient states and the next attempt (or expiry), by the retry policy. */
  private schedule(message: StoredMessage, attemptsSoFar: number, decided: Decided): { results: AttemptResult[]; nextAttemptAt?: number } {
    const { clock, random } = this.deps;
    const options = this.policy;
    const results = decided.results.map((r): AttemptResult => (r.state === 'ambiguous' && options.ambiguous === 'hold' ? { ...r, state: 'held' } : r));
    if (!results.some((r) => r.state === 'deferred' || r.state === 'ambiguous')) return { results };
    // A route's own schedule replaces --retry; several routes in one message: the one that
    // wants to retry soonest sets the pace for the message.
    const failedAttempts = attemptsSoFar + 1;
    const candidates = decided.retries.length > 0 ? decided.retries : [options.retry.retry];
    const retry = candidates.reduce((best, r) =>
      retryDelay({ retry: r, maxAge: options.retry.maxAge }, failedAttempts) < retryDelay({ retry: best, maxAge: options.retry.maxAge }, failedAttempts) ? r : best,
    );
    const step = nextStep({ retry, maxAge: options.retry.maxAge }, { receivedAt: message.receivedAt, now: clock.now(), failedAttempts }, random);
    if (step.kind === 'retry') return { results, nextAttemptAt: step.at };
    return {
      results: results.map((r) => (r.state === 'deferred' || r.state === 'ambiguous' ? { ...r, state: 'expired', reply: `${r.reply}\n(${step.reason})` } : r)),
    };
  }

  /** Queue the DSN owed to the sender for bounced and expired recipients (NOTIFY permitting). */
  /**
   * Queue the DSNs this attempt makes owed (NOTIFY permitting; never for a null sender):
   * a failure report for bounced and expired recipients, and once per message, when it has been
   * queued longer than --delay-warning, a delay report for the recipients still being retried.
   * Returns a note for the history when a delay report went out.
   */
  private async oweDsns(message: StoredMessage, decided: Decided, results: readonly AttemptResult[], nextAttemptAt: number | undefined): Promise<string | undefined> {
    if (message.envelope.sender === '') return undefined;
    const now = this.deps.clock.now();
    const failed = results.filter((r) => r.state === 'bounced' || r.state === 'expired');
    if (failed.length > 0) await this.queueDsn(message, decided, failed, 'failed', now);
    const waiting = results.filter((r) => r.state === 'deferred' || r.state === 'ambiguous');
    const warnAfter = this.policy.delayWarning;
    if (waiting.length === 0 || warnAfter === undefined || now - message.receivedAt < warnAfter) return undefined;
    const history = await this.deps.store.history(message.id);
    if (history.some((h) => h.note?.includes(DELAY_NOTE))) return undefined;
    const sent = await this.queueDsn(message, decided, waiting, 'delayed', now, nextAttemptAt);
    return sent ? DELAY_NOTE : undefined;
  }

  private async queueDsn(
    message: StoredMessage,
    decided: Decided,
    about: readonly AttemptResult[],
    action: 'failed' | 'delayed',
    now: number,
    nextAttemptAt?: number,
  ): Promise<boolean> {
    const recipients = about.map((r): DsnRecipient => {
      const rcpt = message.recipients[r.recipient] as RecipientRecord;
      const outcome = decided.outcomes.get(r.recipient);
      // "failed" needs a 5.x.x status (an expiry turns the last 4.x.x into 5.x.x); "delayed" a 4.x.x.
      const enhanced = outcome?.enhanced;
      const status =
        action === 'delayed' ? (enhanced?.replace(/^5/, '4') ?? '4.0.0') : r.state === 'expired' ? (enhanced?.replace(/^4/, '5') ?? '5.4.7') : (enhanced ?? '5.0.0');
      return {
        address: rcpt.address,
        ...(rcpt.orcpt ? { orcpt: rcpt.orcpt } : {}),
        ...(rcpt.notify ? { notify: rcpt.notify } : {}),
        action,
        status,
        ...(outcome && !outcome.local && decided.nextHops[0] ? { remoteMta: `dns; ${decided.nextHops[0].replace(/\[.*$/, '')}` } : {}),
        diagnosticCode: r.reply,
        lastAttemptDate: now,
        ...(action === 'delayed' ? { willRetryUntil: message.receivedAt + this.policy.retry.maxAge } : {}),
      };
    });
    const env = message.envelope;
    const dsn = buildDsn({
      reportingMta: this.deps.options.hostname,
      queueId: message.id,
      arrivalDate: message.receivedAt,
      now,
      envelope: { sender: env.sender, smtputf8: env.smtputf8, body: env.body, ...(env.dsnRet ? { dsnRet: env.dsnRet } : {}), ...(env.dsnEnvid !== undefined ? { dsnEnvid: env.dsnEnvid } : {}) },
      recipients,
      messageIdDomain: this.deps.options.hostname,
      boundarySeed: String(this.deps.random()),
    });
    if (!dsn) return false;
    let incoming;
    try {
      incoming = this.deps.intake.openGenerated({ recipient: dsn.recipient, body: dsn.body, smtputf8: dsn.smtputf8, origin: `dsn:${message.id}` });
    } catch (err) {
      this.deps.log.warn({ queueId: message.id, sender: dsn.recipient, err: String(err) }, 'cannot return a DSN to this sender');
      return false;
    }
    try {
      for await (const chunk of streamDsn(dsn, dsnOriginal(this.deps.store, this.deps.log, message))) await incoming.write(chunk);
      const id = await incoming.commit();
      this.deps.log.info({ queueId: message.id, dsn: id, to: dsn.recipient, kind: dsn.kind, nextAttemptAt }, 'DSN queued');
      return true;
    } catch (err) {
      await incoming.abort();
      throw err;
    }
  }

}

/** NOTIFY=SUCCESS (RFC 3461): a delivery of this recipient owes the sender a DSN before the record. */
function wantsSuccessDsn(recipient: RecipientRecord | undefined): boolean {
  const notify = recipient?.notify;
  return Array.isArray(notify) && notify.includes('SUCCESS');
}
