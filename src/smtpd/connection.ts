/**
 * @module smtpd/connection
 * One inbound SMTP connection: the thin adapter between a socket and the pure codec
 * (LineReader, DataDecoder, ServerSession). It owns the effects the session asks for: policy
 * checks, opening a message in cleanup/, streaming body bytes into it, committing it, timers.
 *
 * Input is processed strictly in order by one async loop, so pipelined commands (RFC 2920) get
 * their replies in order; replies are batched and flushed when the input runs dry, when 354
 * must go out, or before closing. Backpressure: while the loop awaits the store, arriving bytes
 * queue up to INBOX_HIGH_WATER and then the socket is paused.
 *
 * Three input modes: commands (LineReader), DATA (DataDecoder: CRLF.CRLF only, un-stuffing,
 * bare-newline policy), BDAT (exactly N octets, no un-stuffing). Bytes that follow the end of a
 * mode are handed to the next one, never re-read or dropped.
 *
 * Lifecycle: once closed (by us, or the client gone) a connection never processes another byte:
 * every step re-checks after each await, so a client that vanishes while its message is being
 * stored cannot leave a session running on its behalf. A client that half-closes (sends its
 * last commands and FIN) still has its pipelined input processed and answered, then we close.
 *
 * TLS: STARTTLS (RFC 3207) upgrades the socket in place. Every byte that arrived after the
 * STARTTLS line and before the handshake (pipelined, or already queued) is dropped and logged,
 * never read as a command of the TLS session (the CVE-2011-0411 injection class). On the
 * submission listener the handshake comes first, before the banner (RFC 8314). A failed or
 * timed-out handshake is logged and the connection closed. AUTH (RFC 4954): the lines of an
 * exchange go to the session as responses, the credentials to the Authenticator.
 *
 * Failure: a store error answers 451 4.3.0 and nothing is queued; a client that disconnects or
 * times out mid-message leaves nothing queued (the writer is aborted); a 250 for a message is
 * sent only after cleanup's commit resolved, i.e. the message is durable. A store or policy call
 * that hangs for two idle periods ends the session with 421 4.3.0 rather than holding it forever.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { SecureContext } from 'node:tls';
import {
  DataDecoder,
  LineReader,
  NewlineNormalizer,
  ServerSession,
  formatReply,
  parseCommand,
  reply,
} from '../protocol/index.js';
import type {
  BareNewlinePolicy,
  Decision,
  LineEvent,
  Reply,
  ServerSessionOptions,
  TransactionEnvelope,
} from '../protocol/index.js';
import type { ClientInfo, IncomingMessage, MessageIntake } from '../cleanup/index.js';
import { isLoopback } from '../config/index.js';
import { pooledRandomBytes, sleepOn } from '../util/index.js';
import type { Clock, Timer } from '../util/index.js';
import type { Logger } from '../obs/index.js';
import type { Policy, PolicyClient } from './policy.js';
import type { Authenticator } from './auth.js';
import type { Tarpit } from './limits.js';

const TOO_BIG = reply(552, '5.3.4', 'Message size exceeds fixed maximum message size');
const QUEUE_WRITE_ERROR = reply(451, '4.3.0', 'Queue write error, try again later');
const BARE_NEWLINE_DATA = reply(550, '5.6.0', 'Message contains bare <CR> or <LF>; lines must end with <CR><LF>');
const BARE_NEWLINE_BDAT = reply(550, '5.6.0', 'Message contains bare <CR> or <LF>; use BODY=BINARYMIME for binary data');
const SHUTTING_DOWN = reply(421, '4.3.2', 'Service shutting down, try again later');
const STALLED = reply(421, '4.3.0', 'Local processing stalled, try again later');
const INTERNAL_ERROR = reply(421, '4.3.0', 'Internal error, closing connection');

/** Bytes queued from the socket while the loop is busy before the socket is paused. */
const INBOX_HIGH_WATER = 256 * 1024;
/** How long a closed-by-us connection may linger before it is destroyed. */
const LINGER_MS = 5_000;

export interface ConnectionOptions {
  readonly session: ServerSessionOptions;
  readonly maxCommandLine: number;
  readonly bareNewline: BareNewlinePolicy;
  readonly commandTimeout: number;
  readonly dataTimeout: number;
  /** 'loopback': offer AUTH without TLS when the client is on a loopback address. */
  readonly authWithoutTls?: 'off' | 'loopback';
}

export interface ConnectionDeps {
  readonly options: ConnectionOptions;
  readonly policy: Policy;
  readonly intake: MessageIntake;
  readonly clock: Clock;
  readonly log: Logger;
  /** The context for a handshake starting now; undefined: no certificate, no STARTTLS. */
  readonly tls?: () => SecureContext | undefined;
  /** Present when a user file is configured: AUTH is offered. */
  readonly auth?: Authenticator;
  /** The submission listener: TLS from the first byte (RFC 8314). */
  readonly implicitTls?: boolean;
  /** Delays this session's replies once it has made too many errors (smtpd/limits); absent: never. */
  readonly tarpit?: Tarpit;
}

type Mode =
  | { readonly kind: 'command' }
  | { readonly kind: 'data'; readonly decoder: DataDecoder; readonly message: IncomingMessage; writeFailed: boolean }
  | { readonly kind: 'bdat'; remaining: number; readonly size: number; readonly last: boolean; readonly refusal?: Reply }
  | { readonly kind: 'closed' };

/** The message being assembled from BDAT chunks; it spans several chunks and commands. */
interface BdatMessage {
  readonly message: IncomingMessage;
  readonly normalizer: NewlineNormalizer | undefined;
  octets: number;
  failure: Reply | undefined;
}

export class SmtpConnection {
  readonly id = pooledRandomBytes(6).toString('hex');
  readonly closed: Promise<void>;

  private readonly session: ServerSession;
  private readonly lines: LineReader;
  /** The plain socket, or the TLSSocket over it once TLS is up. */
  private socket: Socket;
  /** Negotiated TLS parameters, for the log and the Received: header. */
  private tlsInfo: { readonly version: string; readonly cipher: string } | undefined;
  private readonly client: { ip: string; port: number };
  private readonly log: Logger;
  private mode: Mode = { kind: 'command' };
  private bdat: BdatMessage | undefined;
  private inbox: Buffer[] = [];
  private inboxBytes = 0;
  private running = false;
  private outbox: string[] = [];
  private draining = false;
  /** The client is not reading its replies: stop reading its commands until it does. */
  private outputBlocked = false;
  private idle: Timer | undefined;
  /** The period `idle` was armed with. */
  private idleMs = 0;
  /** The idle timer fired once while we were busy on the store or a policy. */
  private stalled = false;
  /** A TLS handshake is under way: it has its own deadline, and no SMTP reply may be written. */
  private handshaking = false;
  /** The client sent FIN: finish what it sent, answer it, then close. */
  private inputEnded = false;
  /** The socket is gone (closed both ways or reset). */
  private gone = false;
  private resolveClosed!: () => void;

  private readonly onSocketData = (chunk: Buffer): void => this.onData(chunk);
  private readonly onSocketEnd = (): void => this.onEnd();

  constructor(
    socket: Socket,
    private readonly deps: ConnectionDeps,
  ) {
    this.socket = socket;
    this.client = { ip: socket.remoteAddress ?? 'unknown', port: socket.remotePort ?? 0 };
    const loopbackAuth = deps.options.authWithoutTls === 'loopback' && isLoopback(this.client.ip);
    this.session = new ServerSession({
      ...deps.options.session,
      starttls: deps.tls?.() !== undefined,
      implicitTls: deps.implicitTls === true,
      auth: deps.auth !== undefined,
      authWithoutTls: loopbackAuth,
    });
    this.lines = new LineReader({ maxLineLength: deps.options.maxCommandLine });
    this.log = deps.log.child({ session: this.id, client: this.client.ip });
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  get idleInCommandMode(): boolean {
    return this.mode.kind === 'command' && !this.running && !this.session.inTransaction;
  }

  async start(): Promise<void> {
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.log.debug({ err: err.message }, 'socket error'));
    this.socket.on('close', () => this.onClose());
    this.socket.on('end', this.onSocketEnd);
    this.idleMs = this.deps.options.commandTimeout;
    this.idle = this.deps.clock.setTimer(this.idleMs, () => this.onIdleTimeout());
    this.log.debug({ port: this.client.port, implicitTls: this.deps.implicitTls === true }, 'connect');
    if (this.deps.implicitTls && !(await this.handshake())) return;
    const verdict = await this.deps.policy.onConnect(this.policyClient());
    if (this.stopped) return;
    if (!verdict.accept) {
      this.send(verdict.reply);
      this.close();
      return;
    }
    this.send(this.session.greeting());
    this.flush();
    // Only now: bytes an early talker sent before the banner wait in the socket until here.
    this.socket.on('data', this.onSocketData);
  }

  /**
   * Turn the socket into a TLSSocket and wait for the handshake (bounded by the command
   * timeout). True when TLS is up; false when it failed, which is logged, and the connection is
   * closed. The plain socket's data and end listeners go first: from here on the TLS layer
   * alone reads it. The caller attaches the data listener when it is ready for commands.
   */
  private async handshake(): Promise<boolean> {
    const context = this.deps.tls?.();
    if (context === undefined) throw new Error('TLS handshake without a certificate');
    const plain = this.socket;
    plain.off('data', this.onSocketData);
    plain.off('end', this.onSocketEnd);
    const secure = new TLSSocket(plain, { isServer: true, secureContext: context });
    this.handshaking = true;
    secure.on('error', (err) => this.log.debug({ err: err.message }, 'tls socket error'));
    const outcome = await new Promise<{ ok: true } | { ok: false; reason: string }>((resolve) => {
      const timer = this.deps.clock.setTimer(this.deps.options.commandTimeout, () => resolve({ ok: false, reason: 'handshake timed out' }));
      secure.once('secure', () => {
        timer.cancel();
        resolve({ ok: true });
      });
      secure.once('error', (err) => {
        timer.cancel();
        resolve({ ok: false, reason: err.message });
      });
      // allowHalfOpen: a client that gives up (e.g. it does not trust our certificate) may only
      // half-close, so its FIN ends the handshake as surely as a reset does.
      for (const event of ['close', 'end'] as const) {
        secure.once(event, () => {
          timer.cancel();
          resolve({ ok: false, reason: `connection ${event === 'end' ? 'ended' : 'closed'} by the client during the handshake` });
        });
      }
    });
    this.handshaking = false;
    if (!outcome.ok) {
      this.log.warn({ reason: outcome.reason }, 'TLS handshake failed');
      this.mode = { kind: 'closed' };
      secure.destroy();
      plain.destroy();
      return false;
    }
    this.socket = secure;
    // The idle timer may have fired (and been ignored) during the handshake: start it afresh.
    this.idle?.refresh();
    secure.on('close', () => this.onClose());
    secure.on('end', this.onSocketEnd);
    this.tlsInfo = { version: secure.getProtocol() ?? 'unknown', cipher: secure.getCipher()?.name ?? 'unknown' };
    this.log.info(this.tlsInfo, 'TLS established');
    return !this.stopped;
  }

  /**
   * STARTTLS: the 220 goes out in plain text, whatever the client sent after the command is
   * dropped (it was sent before TLS, so it cannot be trusted to belong to the TLS session), the
   * handshake runs, and the session starts over (RFC 3207 §4.2).
   */
  private async startTls(ready: Reply): Promise<void> {
    this.send(ready);
    this.flush();
    const dropped = this.lines.takeBuffered().length + this.inboxBytes;
    this.inbox = [];
    this.inboxBytes = 0;
    if (dropped > 0) this.log.warn({ octets: dropped }, 'STARTTLS: discarded input sent before the TLS handshake');
    if (!(await this.handshake())) return;
    this.session.tlsStarted();
    this.socket.on('data', this.onSocketData);
  }

  /** Closed by us or gone: nothing more is read, answered or stored for this client. */
  get stopped(): boolean {
    return this.mode.kind === 'closed' || this.gone;
  }

  /** SIGTERM: the current transaction may finish; then the client gets 421 and we close. */
  drain(): void {
    this.draining = true;
    if (this.idleInCommandMode) this.shutdownNow();
  }

  /** Grace is over: 421 to the client, drop whatever is unfinished. */
  shutdownNow(): void {
    if (this.stopped) return;
    this.send(SHUTTING_DOWN);
    this.close();
  }

  private onData(chunk: Buffer): void {
    if (this.stopped) return;
    this.inbox.push(chunk);
    this.inboxBytes += chunk.length;
    if (this.inboxBytes > INBOX_HIGH_WATER) this.socket.pause();
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (let chunk = this.inbox.shift(); chunk !== undefined; chunk = this.inbox.shift()) {
        this.inboxBytes -= chunk.length;
        await this.consume(chunk);
        if (this.stopped) return;
        this.resumeIfDrained();
      }
      this.flush();
      if (this.inputEnded) this.endOfInput();
    } catch (err) {
      // Invariant breach in our own code: fail this session loudly, keep the server serving.
      this.log.error({ err: err instanceof Error ? err.stack : String(err) }, 'session failed');
      this.send(INTERNAL_ERROR);
      this.close();
    } finally {
      this.running = false;
      this.stalled = false;
      if (this.gone) this.finishClose();
      else this.armIdleTimer();
    }
  }

  private async consume(chunk: Buffer): Promise<void> {
    let input: Buffer | undefined = chunk;
    while (input !== undefined && input.length > 0 && !this.stopped) {
      const mode = this.mode;
      if (mode.kind === 'command') input = await this.consumeCommands(input);
      else if (mode.kind === 'data') input = await this.consumeData(mode, input);
      else if (mode.kind === 'bdat') input = await this.consumeBdat(mode, input);
      else return;
    }
  }

  /** Returns the bytes left over when a command switched into DATA or BDAT mode. */
  private async consumeCommands(input: Buffer): Promise<Buffer | undefined> {
    this.lines.push(input);
    for (let event = this.lines.next(); event !== undefined; event = this.lines.next()) {
      await this.handleLine(event);
      if (this.stopped) return undefined;
      if (this.mode.kind !== 'command') return this.lines.takeBuffered();
    }
    this.flush();
    return undefined;
  }

  private async handleLine(event: LineEvent): Promise<void> {
    if (this.draining && !this.session.inTransaction) {
      this.shutdownNow();
      return;
    }
    const pause = this.deps.tarpit?.nextDelay() ?? 0;
    if (pause > 0) {
      await this.tarpitWait(pause);
      if (this.stopped) return;
    }
    const decision =
      event.kind === 'error'
        ? this.session.lineError(event.code)
        : this.session.inAuthExchange
          ? this.session.authResponse(Buffer.from(event.line).toString('latin1'))
          : this.session.receive(parseCommand(event.line));
    await this.execute(decision);
    if (this.bdat && !this.session.inTransaction && !this.stopped) await this.dropBdatMessage();
  }

  private async execute(decision: Decision): Promise<void> {
    switch (decision.kind) {
      case 'reply':
        this.send(decision.reply);
        if (decision.close || decision.reply.code === 421) this.close();
        return;
      case 'start-tls':
        await this.startTls(decision.reply);
        return;
      case 'check-auth': {
        const auth = this.deps.auth;
        if (auth === undefined) throw new Error('AUTH offered without an authenticator');
        const outcome = await auth.authenticate({ ip: this.client.ip, session: this.id }, decision.credentials);
        if (this.stopped) return;
        if (outcome.ok) {
          this.log.info({ user: outcome.user }, 'authenticated');
          this.sendChecked(this.session.authSucceeded(outcome.user));
          return;
        }
        this.sendChecked(this.session.authFailed(outcome.reply));
        if (outcome.close) this.close();
        return;
      }
      case 'check-mail': {
        const verdict = await this.deps.policy.onMail(this.policyClient(), decision.from, decision.params);
        if (this.stopped) return;
        this.sendChecked(verdict.accept ? this.session.mailAccepted(decision.from, decision.params) : this.session.mailRefused(verdict.reply));
        return;
      }
      case 'check-rcpt': {
        const verdict = await this.deps.policy.onRcpt(this.policyClient(), decision.to, decision.params);
        if (this.stopped) return;
        this.sendChecked(verdict.accept ? this.session.rcptAccepted(decision.to, decision.params) : this.session.rcptRefused(verdict.reply));
        return;
      }
      case 'start-data':
        this.enter({
          kind: 'data',
          decoder: new DataDecoder({ maxMessageSize: this.deps.options.session.maxMessageSize, bareNewline: this.deps.options.bareNewline }),
          message: this.openMessage(decision.envelope),
          writeFailed: false,
        });
        this.send(decision.reply);
        this.flush();
        this.armIdleTimer();
        return;
      case 'bdat':
        if (decision.accept && decision.open && decision.envelope) {
          const binary = decision.envelope.body === 'BINARYMIME';
          this.bdat = {
            message: this.openMessage(decision.envelope),
            normalizer: binary ? undefined : new NewlineNormalizer(this.deps.options.bareNewline),
            octets: 0,
            failure: undefined,
          };
        }
        {
          const mode: Extract<Mode, { kind: 'bdat' }> = {
            kind: 'bdat',
            remaining: decision.size,
            size: decision.size,
            last: decision.last,
            ...(decision.reply ? { refusal: decision.reply } : {}),
          };
          this.enter(mode);
          if (decision.size === 0) await this.completeBdatChunk(mode);
        }
        return;
    }
  }

  private async consumeData(mode: Extract<Mode, { kind: 'data' }>, input: Buffer): Promise<Buffer | undefined> {
    const step = mode.decoder.push(input);
    if (!mode.writeFailed) {
      try {
        // Un-stuffing splits a dot-heavy chunk into one slice per line; one write per socket
        // chunk (a copy of at most that chunk) instead of one per line keeps the spool fast.
        if (step.chunks.length === 1) await mode.message.write(step.chunks[0] as Buffer);
        else if (step.chunks.length > 1) await mode.message.write(Buffer.concat(step.chunks));
      } catch (err) {
        mode.writeFailed = true;
        if (!this.stopped) this.log.error({ err: String(err), queueId: mode.message.id }, 'spool write failed');
      }
    }
    if (this.stopped || !step.done) return undefined;
    this.enter({ kind: 'command' });
    const result = await this.finishData(mode);
    if (this.stopped) return undefined;
    this.sendChecked(result);
    return step.rest;
  }

  private async finishData(mode: Extract<Mode, { kind: 'data' }>): Promise<Reply> {
    const { decoder, message } = mode;
    if (decoder.overflow) {
      await message.abort();
      return this.session.messageFailed(TOO_BIG);
    }
    if (this.deps.options.bareNewline === 'reject' && decoder.bareNewlines > 0) {
      await message.abort();
      this.log.warn({ queueId: message.id, bareNewlines: decoder.bareNewlines }, 'message refused: bare CR or LF');
      return this.session.messageFailed(BARE_NEWLINE_DATA);
    }
    if (decoder.bareNewlines > 0) this.log.info({ queueId: message.id, bareNewlines: decoder.bareNewlines }, 'bare CR/LF normalised');
    if (mode.writeFailed) {
      await message.abort();
      return this.session.messageFailed(QUEUE_WRITE_ERROR);
    }
    return this.commit(message);
  }

  private async consumeBdat(mode: Extract<Mode, { kind: 'bdat' }>, input: Buffer): Promise<Buffer | undefined> {
    const take = Math.min(mode.remaining, input.length);
    const part = input.subarray(0, take);
    mode.remaining -= take;
    const bdat = this.bdat;
    if (mode.refusal === undefined && bdat && bdat.failure === undefined) await this.storeBdatPart(bdat, part);
    if (this.stopped) return undefined;
    if (mode.remaining === 0) await this.completeBdatChunk(mode);
    return take < input.length ? input.subarray(take) : undefined;
  }

  private async storeBdatPart(bdat: BdatMessage, part: Buffer): Promise<void> {
    const out = bdat.normalizer ? bdat.normalizer.push(part) : [part];
    // Counted after normalisation: what is stored is what the limit is about.
    for (const chunk of out) bdat.octets += chunk.length;
    if (bdat.octets > this.deps.options.session.maxMessageSize) {
      bdat.failure = TOO_BIG;
      return;
    }
    try {
      for (const chunk of out) await bdat.message.write(chunk);
      if (bdat.normalizer && this.deps.options.bareNewline === 'reject' && bdat.normalizer.bareNewlines > 0) {
        bdat.failure = BARE_NEWLINE_BDAT;
      }
    } catch (err) {
      if (!this.stopped) this.log.error({ err: String(err), queueId: bdat.message.id }, 'spool write failed');
      bdat.failure = QUEUE_WRITE_ERROR;
    }
  }

  private async completeBdatChunk(mode: Extract<Mode, { kind: 'bdat' }>): Promise<void> {
    this.enter({ kind: 'command' });
    if (mode.refusal !== undefined) {
      this.sendChecked(mode.refusal);
      return;
    }
    const bdat = this.bdat;
    if (!bdat) throw new Error('BDAT chunk accepted without an open message');
    if (bdat.failure === undefined && mode.last && bdat.normalizer) {
      await this.storeBdatTail(bdat, bdat.normalizer.end());
      if (this.stopped) return;
    }
    if (bdat.failure !== undefined) {
      const failure = bdat.failure;
      if (mode.last) await this.dropBdatMessage();
      this.sendChecked(this.session.chunkFailed(failure, mode.last));
      return;
    }
    if (!mode.last) {
      this.sendChecked(this.session.chunkStored(mode.size));
      return;
    }
    this.bdat = undefined;
    const result = await this.commit(bdat.message);
    if (!this.stopped) this.sendChecked(result);
  }

  private async storeBdatTail(bdat: BdatMessage, tail: Buffer[]): Promise<void> {
    for (const chunk of tail) bdat.octets += chunk.length;
    if (bdat.octets > this.deps.options.session.maxMessageSize) {
      bdat.failure = TOO_BIG;
      return;
    }
    try {
      for (const chunk of tail) await bdat.message.write(chunk);
    } catch (err) {
      bdat.failure = QUEUE_WRITE_ERROR;
    }
  }

  private async dropBdatMessage(): Promise<void> {
    const bdat = this.bdat;
    this.bdat = undefined;
    if (bdat) await bdat.message.abort();
  }

  private async commit(message: IncomingMessage): Promise<Reply> {
    if (this.stopped) {
      // Nobody is left to receive a 250: storing would only make a duplicate when the client retries.
      await message.abort();
      return QUEUE_WRITE_ERROR;
    }
    try {
      const id = await message.commit();
      return this.session.messageQueued(id);
    } catch (err) {
      this.log.error({ err: String(err), queueId: message.id }, 'queue commit failed');
      await message.abort();
      return this.session.messageFailed(QUEUE_WRITE_ERROR);
    }
  }

  private openMessage(envelope: TransactionEnvelope): IncomingMessage {
    const user = this.session.user;
    const client: ClientInfo = {
      ip: this.client.ip,
      helo: this.session.heloName,
      protocol: this.session.protocolName,
      session: this.id,
      ...(user !== undefined ? { user } : {}),
      ...(this.tlsInfo !== undefined ? { tls: this.tlsInfo } : {}),
    };
    return this.deps.intake.open(envelope, client);
  }

  private policyClient(): PolicyClient {
    const user = this.session.user;
    return { ip: this.client.ip, session: this.id, helo: this.session.heloName, tls: this.session.secure, ...(user !== undefined ? { user } : {}) };
  }

  /** Send a reply the session produced after an effect; 421 means the error budget is spent. */
  private sendChecked(r: Reply): void {
    this.send(r);
    if (r.code === 421) this.close();
  }

  private send(r: Reply): void {
    this.deps.tarpit?.noteReply(r);
    this.outbox.push(formatReply(r));
  }

  /**
   * The tarpit: the replies owed so far go out, then the next command waits on a timer (never a
   * busy loop: other sessions run meanwhile). The wait is ours, not the client's idleness, so the
   * idle timer starts afresh after it (the delay is capped below the command timeout).
   */
  private async tarpitWait(ms: number): Promise<void> {
    this.flush();
    await sleepOn(this.deps.clock, ms).done;
    this.stalled = false;
    this.armIdleTimer();
  }

  private flush(): void {
    if (this.outbox.length === 0 || this.socket.destroyed) return;
    const accepted = this.socket.write(this.outbox.join(''));
    this.outbox = [];
    if (!accepted && !this.outputBlocked) {
      // A pipelining client that never reads would otherwise grow our write buffer without end.
      this.outputBlocked = true;
      this.socket.pause();
      this.socket.once('drain', () => {
        this.outputBlocked = false;
        this.resumeIfDrained();
      });
    }
  }

  private resumeIfDrained(): void {
    if (this.socket.isPaused() && !this.outputBlocked && this.inboxBytes <= INBOX_HIGH_WATER / 2) this.socket.resume();
  }

  /** Runs after every input chunk: refresh the timer in place unless the mode's timeout changed. */
  private armIdleTimer(): void {
    if (this.stopped || !this.idle) return;
    const ms = this.mode.kind === 'command' ? this.deps.options.commandTimeout : this.deps.options.dataTimeout;
    if (ms === this.idleMs) {
      this.idle.refresh();
      return;
    }
    this.idle.cancel();
    this.idleMs = ms;
    this.idle = this.deps.clock.setTimer(ms, () => this.onIdleTimeout());
  }

  private onIdleTimeout(): void {
    if (this.stopped || this.handshaking) return;
    if (this.running && !this.stalled) {
      // We are the slow party (the store, a policy); the client is waiting on us, not idle.
      this.stalled = true;
      this.armIdleTimer();
      return;
    }
    if (this.running) {
      this.log.error({ mode: this.mode.kind }, 'session stalled on local processing');
      this.send(STALLED);
    } else {
      this.log.info({ mode: this.mode.kind }, 'timeout');
      this.send(reply(421, '4.4.2', `${this.deps.options.session.hostname} Error: timeout exceeded`));
    }
    this.close();
  }

  /** The only way into a new mode: once closed, a connection stays closed. */
  private enter(mode: Mode): void {
    if (this.mode.kind !== 'closed') this.mode = mode;
  }

  /** The client half-closed and everything it sent has been handled. */
  private endOfInput(): void {
    if (this.mode.kind === 'data' || this.mode.kind === 'bdat') {
      this.log.info({ mode: this.mode.kind }, 'client ended its input in the middle of a message');
    }
    this.close();
  }

  private onEnd(): void {
    this.inputEnded = true;
    if (!this.running) this.endOfInput();
  }

  /** Flush what is pending, half-close, and destroy if the client lingers. */
  private close(): void {
    if (this.mode.kind === 'closed') return;
    void this.abortUnfinished();
    this.mode = { kind: 'closed' };
    this.flush();
    this.socket.end();
    this.idle?.cancel();
    this.idle = this.deps.clock.setTimer(LINGER_MS, () => this.socket.destroy());
  }

  private onClose(): void {
    // After STARTTLS both the plain socket and the TLSSocket report the close.
    if (this.gone) return;
    this.gone = true;
    void this.abortUnfinished();
    this.idle?.cancel();
    this.log.debug({}, 'disconnect');
    // A loop still awaiting the store finishes first; it sees `gone` and stops. Should the store
    // hang, the connection is still let go after the linger time so shutdown cannot wait on it.
    if (!this.running) this.finishClose();
    else this.idle = this.deps.clock.setTimer(LINGER_MS, () => this.finishClose());
  }

  private finishClose(): void {
    this.mode = { kind: 'closed' };
    this.idle?.cancel();
    this.resolveClosed();
  }

  private async abortUnfinished(): Promise<void> {
    const mode = this.mode;
    if (mode.kind === 'data') await mode.message.abort();
    await this.dropBdatMessage();
  }
}
