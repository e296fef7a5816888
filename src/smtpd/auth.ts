/**
 * @module smtpd/auth
 * AUTH (RFC 4954) for inbound clients: checks the credentials a PLAIN or LOGIN exchange produced
 * against the user file (argon2id hashes, @node-rs/argon2), throttles guessing, and binds MAIL
 * FROM to the user's addresses when asked.
 *
 * Who calls it: smtpd/connection on a `check-auth` decision (authenticate), main.ts to build it
 * and to swap the user file on SIGHUP (setUsers), and main's policy composition (senderBinding).
 *
 * Throttling: failures are counted per client IP and per user name in a fixed window
 * (`--auth-failure-window`). An IP over `--auth-failures-per-ip` gets `421 4.7.0` and the
 * connection closes; a user name over `--auth-failures-per-user` gets `454 4.7.0` for that name
 * (its owner may be the one under attack; the IP may be innocent). Both are answered after
 * `--auth-failure-delay`, as is every wrong password (`535 5.7.8`). Each failure is logged with
 * the IP and the user name, never the password.
 *
 * Cost: argon2 verification is CPU-heavy by design; it runs on libuv's thread pool (the
 * library's async API) and at most `maxVerifications` run at once; the rest wait in FIFO order.
 * An unknown user is verified against a dummy hash, so the answer takes as long as for a known
 * one (no user enumeration by timing).
 */
import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import type { AuthCredentials, Mailbox, ReversePath } from '../protocol/index.js';
import { reply } from '../protocol/index.js';
import type { Reply } from '../protocol/index.js';
import { sleepOn } from '../util/index.js';
import type { Clock, UserEntry } from '../util/index.js';
import type { Logger } from '../obs/index.js';
import { addressKey } from './limits.js';
import type { Policy } from './policy.js';

/** Failure windows kept per map (IPs, user names) at most. */
const MAX_WINDOWS = 100_000;

export interface AuthLimits {
  readonly failuresPerIp: number;
  readonly failuresPerUser: number;
  readonly failureWindow: number;
  readonly failureDelay: number;
  readonly maxVerifications: number;
}

export type AuthOutcome =
  | { readonly ok: true; readonly user: string }
  /** `close`: end the connection after the reply (the IP is over its failure limit). */
  | { readonly ok: false; readonly reply: Reply; readonly close?: boolean };

export interface AuthClient {
  readonly ip: string;
  readonly session: string;
}

const INVALID = reply(535, '5.7.8', 'Authentication credentials invalid');
const IP_THROTTLED = reply(421, '4.7.0', 'Too many failed authentication attempts from your address; try again later');
const USER_THROTTLED = reply(454, '4.7.0', 'Too many failed authentication attempts for this user; try again later');

interface Window {
  count: number;
  readonly since: number;
}

export class Authenticator {
  private users: ReadonlyMap<string, UserEntry>;
  private limits: AuthLimits;
  private readonly byIp = new Map<string, Window>();
  private readonly byUser = new Map<string, Window>();
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private dummy: Promise<string> | undefined;

  constructor(
    users: ReadonlyMap<string, UserEntry>,
    limits: AuthLimits,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.users = users;
    this.limits = limits;
  }

  /** SIGHUP: a freshly read user file. Sessions already authenticated stay so. */
  setUsers(users: ReadonlyMap<string, UserEntry>): void {
    this.users = users;
  }

  /** SIGHUP: new limits; the failure counts so far are kept. */
  setLimits(limits: AuthLimits): void {
    this.limits = { ...limits, maxVerifications: this.limits.maxVerifications };
  }

  /** Verifications running now (never more than maxVerifications). */
  get verificationsRunning(): number {
    return this.running;
  }

  get userCount(): number {
    return this.users.size;
  }

  /** The addresses a user may send as (sender binding); undefined for an unknown user. */
  sendersOf(name: string): readonly string[] | undefined {
    return this.users.get(name)?.senders;
  }

  async authenticate(client: AuthClient, credentials: AuthCredentials): Promise<AuthOutcome> {
    const { username, mechanism } = credentials;
    const now = this.clock.now();
    const fields = { session: client.session, client: client.ip, user: username, mechanism };
    // Per /64 for IPv6, as every other per-client limit (smtpd/limits): one host owns the prefix.
    const ipKey = addressKey(client.ip);
    if (this.count(this.byIp, ipKey, now) >= this.limits.failuresPerIp) {
      this.log.warn({ ...fields, reason: 'ip' }, 'auth throttled');
      await this.delay();
      return { ok: false, reply: IP_THROTTLED, close: true };
    }
    if (this.count(this.byUser, username, now) >= this.limits.failuresPerUser) {
      this.log.warn({ ...fields, reason: 'user' }, 'auth throttled');
      await this.delay();
      return { ok: false, reply: USER_THROTTLED };
    }
    const entry = this.users.get(username);
    const matches = await this.verify(entry?.hash, credentials.password);
    // No proxy authorisation: an authzid other than the user itself is refused like a bad password.
    const authzOk = credentials.authzid === '' || credentials.authzid === username;
    if (entry !== undefined && matches && authzOk) {
      this.byUser.delete(username);
      this.log.info(fields, 'auth ok');
      return { ok: true, user: username };
    }
    const failuresIp = this.fail(this.byIp, ipKey, now);
    const failuresUser = this.fail(this.byUser, username, now);
    const reason = entry === undefined ? 'unknown user' : !matches ? 'wrong password' : 'authorization identity differs';
    this.log.warn({ ...fields, reason, failuresIp, failuresUser }, 'auth failed');
    await this.delay();
    return { ok: false, reply: INVALID };
  }

  private count(map: Map<string, Window>, key: string, now: number): number {
    const w = map.get(key);
    if (w === undefined) return 0;
    if (now - w.since >= this.limits.failureWindow) {
      map.delete(key);
      return 0;
    }
    return w.count;
  }

  private fail(map: Map<string, Window>, key: string, now: number): number {
    const count = this.count(map, key, now) + 1;
    const w = map.get(key);
    if (w === undefined) map.set(key, { count, since: now });
    else w.count = count;
    if (map.size > MAX_WINDOWS) this.prune(map, now);
    return count;
  }

  /**
   * Bounded memory under a spray of IPs or names. A window enters the map when it starts, so the
   * map is in order of `since`: expired windows are at its front, and past the cap the oldest
   * live ones go too (the least there is to forget).
   */
  private prune(map: Map<string, Window>, now: number): void {
    for (const [key, w] of map) {
      if (now - w.since < this.limits.failureWindow && map.size <= MAX_WINDOWS) break;
      map.delete(key);
    }
  }

  private async verify(hash: string | undefined, password: string): Promise<boolean> {
    await this.acquire();
    try {
      this.dummy ??= argon2Hash('postwire: no such user');
      const target = hash ?? (await this.dummy);
      const ok = await argon2Verify(target, password).catch((err: unknown) => {
        this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'auth: a hash in the user file cannot be verified');
        return false;
      });
      return ok && hash !== undefined;
    } finally {
      this.release();
    }
  }

  private acquire(): Promise<void> {
    if (this.running < this.limits.maxVerifications) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.running--;
  }

  private delay(): Promise<void> {
    const ms = this.limits.failureDelay;
    if (ms <= 0) return Promise.resolve();
    return sleepOn(this.clock, ms).done;
  }
}

/**
 * RFC 4954 §3 / RFC 6409 §6.1 practice: an authenticated client may use only its own addresses
 * as the envelope sender (the ones listed in the user file, and its user name when that is an
 * address). The null sender stays allowed (bounces). Unauthenticated sessions are not affected:
 * the relay policy decides about them.
 */
export function senderBinding(base: Policy, sendersOf: (user: string) => readonly string[] | undefined): Policy {
  return {
    onConnect: (client) => base.onConnect(client),
    onRcpt: (client, to, params) => base.onRcpt(client, to, params),
    onMail(client, from, params) {
      if (client.user !== undefined && from !== null && !owns(client.user, sendersOf(client.user) ?? [], from)) {
        return { accept: false, reply: reply(553, '5.7.1', `<${from.address}>: Sender address rejected: not owned by user ${client.user}`) };
      }
      return base.onMail(client, from, params);
    },
  };
}

function owns(user: string, senders: readonly string[], from: NonNullable<ReversePath>): boolean {
  const wanted = canonical(from);
  return [...senders, user].some((address) => address.toLowerCase() === wanted);
}

/** Domains are case-insensitive; local parts are compared case-insensitively too (as Postfix's lookups do). */
function canonical(m: Mailbox): string {
  return `${m.localPart}@${m.domain}`.toLowerCase();
}
