/**
 * @module delivery/pool
 * Idle SMTP connections kept per destination and host, so the next message to the same next hop
 * skips the connect, greeting and EHLO (undici's Pool, Postfix's connection cache). A lease is a
 * reused connection (parked moments ago and handed out as it is, or idle longer and having just
 * answered RSET), or a fresh one from openConnection.
 *
 * Queue discipline: idle connections are a LIFO stack per `destination|address|port` (the most
 * recently used is the most likely to be alive). A connection is parked only when its session is
 * ready (the machine RSETs a transaction left open itself). It leaves the pool after
 * `idleTimeoutMs` idle (QUIT), after `maxReuse` transactions (QUIT), when the peer closes it, or
 * when the pool closes.
 *
 * The liveness probe (issue 5): a connection idle for less than `probeAfterMs` (default 2 s,
 * the figure of Postfix's smtp_connection_cache_time_limit, how long Postfix keeps an unused
 * connection at all) is handed out without RSET: the Lease says `probed: false`. One idle longer,
 * or any when the caller asks for `probe`, is probed with RSET first. Postfix probes every reuse
 * (smtp_reuse.c, smtp_reuse_common); we skip the round trip because the fallback makes it safe:
 * an unprobed connection may turn out dead at MAIL (a FIN or a 421 idle timeout crossing our
 * commands), and delivery/agent then drops it and asks again with `probe`, once
 * (TransactionResult.lostBeforeFirstReply).
 *
 * Who calls it: delivery/agent only (acquire before a transaction, release after it).
 * Failure behaviour: a reused connection that fails its RSET is dropped and the next idle one or a
 * fresh connection is tried; that never becomes a delivery outcome. Background work (settling,
 * QUIT) never rejects; close() waits for it and destroys what is still open.
 * Trust: connections are ours; the peer may close an idle one at any time.
 */
import type { Logger } from '../obs/index.js';
import type { Clock, Timer } from '../util/index.js';
import { openConnection } from './connection.js';
import type { ConnectionOptions, ConnectionSecurity, OpenResult, SmtpConnection } from './connection.js';
import type { RouteHost } from './mx.js';
import { requirementKey } from './tls-policy.js';

export interface PoolOptions extends ConnectionOptions {
  readonly log: Logger;
  /** How long an idle connection is kept (default 10 s). */
  readonly idleTimeoutMs?: number;
  /** Transactions per connection before it is retired (default 100). */
  readonly maxReuse?: number;
  /** A connection idle at least this long is probed with RSET before reuse (default 2 s). */
  readonly probeAfterMs?: number;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_REUSE = 100;
/** A connection parked this recently is reused without RSET (Postfix's smtp_connection_cache_time_limit). */
export const DEFAULT_PROBE_AFTER_MS = 2_000;

/**
 * A connection to use now. `reused`: it came from the pool; `probed`: it answered RSET just now
 * (false for a reused connection parked less than probeAfterMs ago, and for a fresh one).
 */
export type Lease =
  | (OpenResult & { readonly ok: false })
  | { readonly ok: true; readonly connection: SmtpConnection; readonly reused: boolean; readonly probed: boolean };

export interface AcquireOptions {
  /** RSET a pooled connection however recently it was parked (the retry after an unprobed one died). */
  readonly probe?: boolean;
}

interface Idle {
  readonly connection: SmtpConnection;
  readonly timer: Timer;
  /** clock.now() when it was parked. */
  readonly since: number;
}

export class ConnectionPool {
  readonly #options: PoolOptions;
  readonly #clock: Clock;
  readonly #idleTimeoutMs: number;
  readonly #maxReuse: number;
  readonly #probeAfterMs: number;
  readonly #idle = new Map<string, Idle[]>();
  /** Every connection not yet closed, whatever its state: close() must not leave one behind. */
  readonly #live = new Set<SmtpConnection>();
  readonly #background = new Set<Promise<void>>();
  /** Connections released while a reply (an RSET's) was outstanding, per key, until they settle. */
  readonly #settling = new Map<string, Set<Promise<void>>>();
  #closing = false;

  constructor(options: PoolOptions) {
    this.#options = options;
    this.#clock = options.clock;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#maxReuse = options.maxReuse ?? DEFAULT_MAX_REUSE;
    this.#probeAfterMs = options.probeAfterMs ?? DEFAULT_PROBE_AFTER_MS;
  }

  /** Idle connections now (all keys); for tests and metrics. */
  get idleCount(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /**
   * A ready connection to `host` for `destination`: a pooled one (parked less than probeAfterMs
   * ago, else after it answered RSET), or a new one. Connections are shared only under the same
   * `security` (TLS requirement, AUTH user): a plain `may` connection is never handed to a
   * REQUIRETLS message.
   */
  async acquire(destination: string, host: RouteHost, security?: ConnectionSecurity, options: AcquireOptions = {}): Promise<Lease> {
    const key = poolKey(destination, host, security);
    for (;;) {
      const entry = this.#take(key);
      if (entry === undefined) {
        // One settling for this key is a reply away from idle: cheaper than a new session.
        const settling = this.#settling.get(key);
        if (settling === undefined || settling.size === 0) break;
        await Promise.race(settling);
        continue;
      }
      if (options.probe !== true && this.#clock.now() - entry.since < this.#probeAfterMs) {
        return { ok: true, connection: entry.connection, reused: true, probed: false };
      }
      if (await entry.connection.reset()) return { ok: true, connection: entry.connection, reused: true, probed: true };
      this.#options.log.debug({ host: entry.connection.label }, 'pooled connection failed RSET; dropped');
      entry.connection.destroy('RSET failed');
    }
    const opened = await openConnection(host, this.#options, security);
    const connection = opened.connection;
    if (connection) this.#track(connection);
    return opened.ok ? { ok: true, connection: opened.connection, reused: false, probed: false } : opened;
  }

  /** After a transaction: park the connection for reuse, or retire it. Never waits for the peer. */
  release(destination: string, connection: SmtpConnection): void {
    if (connection.isClosed) return;
    if (this.#closing || connection.transactions >= this.#maxReuse) {
      this.#run(connection.settled().then(() => connection.quit()));
      return;
    }
    const key = poolKey(destination, connection.host, connection.security);
    if (connection.ready) this.#park(key, connection);
    else {
      // An RSET (or the last reply) is outstanding: park it once the session is ready again.
      const set = this.#settling.get(key) ?? new Set<Promise<void>>();
      this.#settling.set(key, set);
      const settled: Promise<void> = connection.settled().then((ready) => {
        set.delete(settled);
        if (set.size === 0 && this.#settling.get(key) === set) this.#settling.delete(key);
        if (!ready) connection.destroy('not reusable');
        else this.#park(key, connection);
      });
      set.add(settled);
      this.#run(settled);
    }
  }

  /** QUIT every idle connection, wait for background work, destroy whatever is still open. */
  async close(): Promise<void> {
    this.#closing = true;
    while (this.#background.size > 0) await Promise.all([...this.#background]);
    const quits: Promise<void>[] = [];
    for (const list of this.#idle.values()) {
      for (const entry of list) {
        entry.timer.cancel();
        quits.push(entry.connection.quit());
      }
    }
    this.#idle.clear();
    await Promise.all(quits);
    for (const c of this.#live) c.destroy('delivery agent closed');
    await Promise.all([...this.#live].map((c) => c.closed));
  }

  #track(connection: SmtpConnection): void {
    this.#live.add(connection);
    void connection.closed.then(() => {
      this.#live.delete(connection);
      this.#forget(connection);
    });
  }

  #park(key: string, connection: SmtpConnection): void {
    if (this.#closing) {
      this.#run(connection.quit());
      return;
    }
    const timer = this.#clock.setTimer(this.#idleTimeoutMs, () => {
      this.#forget(connection);
      this.#run(connection.quit());
    });
    const list = this.#idle.get(key) ?? [];
    list.push({ connection, timer, since: this.#clock.now() });
    this.#idle.set(key, list);
  }

  #take(key: string): Idle | undefined {
    const list = this.#idle.get(key);
    for (let entry = list?.pop(); entry !== undefined; entry = list?.pop()) {
      entry.timer.cancel();
      if (entry.connection.ready) return entry;
      entry.connection.destroy('dead while idle');
    }
    this.#idle.delete(key);
    return undefined;
  }

  /** A connection closed (peer, timer, pool): it leaves the idle lists. */
  #forget(connection: SmtpConnection): void {
    for (const [key, list] of this.#idle) {
      const i = list.findIndex((e) => e.connection === connection);
      if (i < 0) continue;
      list[i]?.timer.cancel();
      list.splice(i, 1);
      if (list.length === 0) this.#idle.delete(key);
    }
  }

  #run(work: Promise<unknown>): void {
    const p: Promise<void> = work.then(
      () => undefined,
      (err: unknown) => this.#options.log.warn({ err }, 'pooled connection cleanup failed'),
    );
    this.#background.add(p);
    void p.finally(() => this.#background.delete(p));
  }
}

function poolKey(destination: string, host: RouteHost, security: ConnectionSecurity | undefined): string {
  const terms = security === undefined ? '' : `|${requirementKey(security.tls)}|${security.auth?.user ?? ''}`;
  return `${destination}|${host.address}|${host.port}${terms}`;
}
