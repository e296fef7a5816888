/**
 * @module smtpd/listener
 * The inbound SMTP listeners: accept sockets, enforce the connection limits (total and per
 * client IP) before any SMTP is spoken, and hand each socket to an SmtpConnection. The
 * `--listen` listeners speak plain SMTP (with STARTTLS when a certificate is configured); the
 * `--submission` listener speaks TLS from the first byte (RFC 8314) and shares the limits.
 *
 * A connection over a limit is greeted with `421 4.7.0` and closed: the client retries later
 * and nobody else is slowed. Per-IP counts key IPv6 per /64 and skip the exempt networks
 * (smtpd/limits); each session gets its tarpit from there too. The listen backlog is explicit
 * (a burst of hundreds of connects must not be dropped by the kernel's default queue).
 *
 * Shutdown (SIGTERM): stop listening, let each session finish its current transaction (it gets
 * 421 at its next command), and after the grace period close whatever remains with 421.
 * Nothing unfinished is queued: only a committed message ever got a 250.
 */
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { HostPort } from '../config/index.js';
import type { Clock } from '../util/index.js';
import type { Logger } from '../obs/index.js';
import { formatReply, reply } from '../protocol/index.js';
import type { MessageIntake } from '../cleanup/index.js';
import { SmtpConnection } from './connection.js';
import type { ConnectionOptions } from './connection.js';
import type { Policy } from './policy.js';
import type { Authenticator } from './auth.js';
import type { SecureContext } from 'node:tls';
import { addressKey } from './limits.js';
import type { InboundLimits, LimitName } from './limits.js';

/** How long a connection refused at the door may take to read its 421 before it is cut. */
const REFUSED_LINGER_MS = 2_000;

export interface SmtpServerOptions {
  readonly listen: readonly HostPort[];
  /** The implicit-TLS submission listener; needs `tls` in the deps. */
  readonly submission?: HostPort;
  readonly listenBacklog: number;
  readonly maxConnections: number;
  /** Not applied to `limits.isExempt` clients (--limits-exempt, default loopback): application servers open many at once. */
  readonly maxConnectionsPerIp: number;
  readonly connection: ConnectionOptions;
}

export interface SmtpServerDeps {
  readonly options: SmtpServerOptions;
  readonly policy: Policy;
  readonly intake: MessageIntake;
  readonly clock: Clock;
  readonly log: Logger;
  /** The TLS context for handshakes starting now (swapped on SIGHUP); undefined: no TLS. */
  readonly tls?: () => SecureContext | undefined;
  /** The authenticator, when a user file is configured. */
  readonly auth?: () => Authenticator | undefined;
  /** Abuse limits: refusals are counted and logged through it, each session gets its tarpit. */
  readonly limits?: InboundLimits;
}

export class SmtpServer {
  private readonly servers: Server[] = [];
  private readonly connections = new Set<SmtpConnection>();
  private readonly perIp = new Map<string, number>();
  private closing = false;
  private readonly sockets = new Set<Socket>();
  private closedBytes = 0;
  /** What new connections get; reconfigure() replaces it, open sessions keep the one they began with. */
  private options: SmtpServerOptions;
  private policy: Policy;

  constructor(private readonly deps: SmtpServerDeps) {
    this.options = deps.options;
    this.policy = deps.policy;
  }

  /**
   * SIGHUP's live reload: limits, timeouts and the policy for the connections accepted from now
   * on. Open sessions keep the options they started with, so nothing in flight changes under a
   * client. Listeners and the backlog are bound already: changing them needs a restart.
   */
  reconfigure(change: { readonly options: Omit<SmtpServerOptions, 'listen' | 'listenBacklog' | 'submission'>; readonly policy: Policy }): void {
    this.options = {
      ...change.options,
      listen: this.options.listen,
      listenBacklog: this.options.listenBacklog,
      ...(this.options.submission !== undefined ? { submission: this.options.submission } : {}),
    };
    this.policy = change.policy;
  }

  /** The submission listener's bound address, once listening. */
  submissionAddress: HostPort | undefined;

  get openConnections(): number {
    return this.connections.size;
  }

  /** Octets read from clients of accepted connections, closed and open (metrics). */
  get bytesReceived(): number {
    let live = 0;
    for (const socket of this.sockets) live += socket.bytesRead;
    return this.closedBytes + live;
  }

  /** Bind every listener; resolves with the bound addresses (port 0 becomes the real port). */
  async listen(): Promise<HostPort[]> {
    const bound: HostPort[] = [];
    for (const at of this.options.listen) bound.push(await this.bind(at, false));
    if (this.options.submission !== undefined) {
      if (this.deps.tls?.() === undefined) throw new Error('the submission listener needs a TLS certificate');
      this.submissionAddress = await this.bind(this.options.submission, true);
    }
    return bound;
  }

  private async bind(at: HostPort, implicitTls: boolean): Promise<HostPort> {
    // allowHalfOpen: a client may send its last commands and FIN at once; it still gets answers.
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket, implicitTls));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: at.host, port: at.port, backlog: this.options.listenBacklog }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.deps.log.error({ err: err.message }, 'listener error'));
    this.servers.push(server);
    const address = server.address();
    if (!address || typeof address !== 'object') throw new Error(`listener ${at.host}:${at.port} has no address`);
    return { host: address.address, port: address.port };
  }

  /** Stop accepting; drain sessions for up to `graceMs`; then close the rest with 421. */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    const stopped = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const c of this.connections) c.drain();
    const all = Promise.all([...this.connections].map((c) => c.closed));
    let timer: ReturnType<Clock['setTimer']> | undefined;
    const grace = new Promise<'timeout'>((resolve) => (timer = this.deps.clock.setTimer(graceMs, () => resolve('timeout'))));
    if ((await Promise.race([all.then(() => 'done' as const), grace])) === 'timeout') {
      for (const c of this.connections) c.shutdownNow();
      await all;
    }
    timer?.cancel();
    await stopped;
  }

  private accept(socket: Socket, implicitTls: boolean): void {
    const ip = socket.remoteAddress ?? 'unknown';
    // IPv6 clients count per /64, as the rate limits do (smtpd/limits).
    const key = addressKey(ip);
    const refusal = this.admissionRefusal(ip, key);
    if (refusal !== undefined) {
      socket.on('error', () => undefined);
      socket.resume();
      socket.end(formatReply(refusal.reply));
      // A refused client that never closes must not keep a descriptor for ever.
      this.deps.clock.setTimer(REFUSED_LINGER_MS, () => socket.destroy());
      if (refusal.limit !== undefined && this.deps.limits) this.deps.limits.refused(refusal.limit, { client: ip });
      else this.deps.log.info({ client: ip, code: refusal.reply.code }, 'connection refused');
      return;
    }
    const auth = this.deps.auth?.();
    // Half the command timeout at most, so a tarpit delay is never mistaken for a stalled session.
    const tarpit = this.deps.limits?.tarpit(ip, this.options.connection.commandTimeout / 2);
    const connection = new SmtpConnection(socket, {
      options: this.options.connection,
      policy: this.policy,
      intake: this.deps.intake,
      clock: this.deps.clock,
      log: this.deps.log,
      ...(this.deps.tls !== undefined ? { tls: this.deps.tls } : {}),
      ...(auth !== undefined ? { auth } : {}),
      implicitTls,
      ...(tarpit ? { tarpit } : {}),
    });
    this.connections.add(connection);
    this.sockets.add(socket);
    this.perIp.set(key, (this.perIp.get(key) ?? 0) + 1);
    void connection.closed.then(() => {
      this.connections.delete(connection);
      this.sockets.delete(socket);
      this.closedBytes += socket.bytesRead;
      const left = (this.perIp.get(key) ?? 1) - 1;
      if (left > 0) this.perIp.set(key, left);
      else this.perIp.delete(key);
    });
    connection.start().catch((err: unknown) => {
      this.deps.log.error({ err: err instanceof Error ? err.stack : String(err), session: connection.id }, 'session start failed');
      connection.shutdownNow();
    });
  }

  private admissionRefusal(ip: string, key: string): { reply: ReturnType<typeof reply>; limit?: LimitName } | undefined {
    const host = this.options.connection.session.hostname;
    if (this.closing) return { reply: reply(421, '4.3.2', `${host} Service shutting down, try again later`) };
    if (this.connections.size >= this.options.maxConnections) {
      return { reply: reply(421, '4.7.0', `${host} Too many connections, try again later`), limit: 'connections' };
    }
    if ((this.perIp.get(key) ?? 0) >= this.options.maxConnectionsPerIp && !(this.deps.limits?.isExempt(ip) ?? false)) {
      const limit = this.options.maxConnectionsPerIp;
      return { reply: reply(421, '4.7.0', `${host} Too many connections from your address (at most ${limit} at once), try again later`), limit: 'connections-per-ip' };
    }
    return undefined;
  }
}
