/**
 * @module delivery/connection
 * One TCP connection to one host driving one protocol/ClientSession (undici's Client): connect
 * with a timeout, feed socket bytes through a ReplyReader to the session, write what it says, arm
 * the step timer from CLIENT_STEPS[session.awaiting] on the injected clock, and stream the body
 * from the spool (DATA, dot-stuffed by the codec, or BDAT chunks) with backpressure. It returns
 * facts; delivery/outcome says what they mean and delivery/agent which host comes next.
 *
 * Framing-fault guard (issue 3 item 6, the founding bug): the body is counted and hashed as read
 * from the spool; if the count differs from `job.size` the session gets fault() before the
 * terminator or BDAT LAST, and the socket is destroyed with what is still buffered: the peer sees
 * a connection lost in DATA, never a prefix followed by end-of-data. Before the terminator pending
 * socket events run once, so a dropped connection is seen before the RFC 1047 window opens.
 *
 * Writes (issue 5): the DATA pump holds each stuffed spool chunk until the next is read, so the
 * last one leaves with the terminator in one write after the window mark (a body of one chunk:
 * MAIL/RCPT/DATA, then body and '.', two writes); a BDAT command and its octets are one write too.
 * A fault, a spool error or a failed mark drops the held tail with the connection.
 *
 * The window mark (DESIGN.md invariant 3): job.beforeEndOfData, when given, is awaited once per
 * transaction right before the terminator or BDAT LAST (before the settle above); if it rejects,
 * the connection is dropped without end-of-data and the result carries windowError.
 *
 * Long lines (policy `long-lines`, delivery/long-lines; DESIGN.md invariant 1's one exception):
 * BDAT to a peer offering BINARYMIME (and a BINARYMIME body, which goes nowhere else) sends every
 * line unchanged. Otherwise `wrap` streams the body through a LineWrapper *after* the meter (the
 * guard still counts and hashes the spool's bytes, compared with job.size; the peer gets 3 more
 * octets per break); `pass` sends it unchanged; `bounce` pre-scans the spool before MAIL (one
 * extra sequential read up to the first long line, only for a body over 998 octets and only under
 * `bounce`) and, if a line is too long, decides every recipient with a local 554 5.6.0 without
 * writing a byte; the connection stays ready. Should the pump then meet a long line anyway (the
 * spool changed between the reads) that is a framing fault before end-of-data, never a partial
 * body. TransactionResult says what was done (longLineAction, wrapBreaks) for the history.
 *
 * STARTTLS and AUTH (issue 6): between the session's first `ready` and the connection's own,
 * #setup asks for STARTTLS when the ConnectionSecurity's requirement wants it, runs the handshake
 * on the same socket (node:tls, TLS 1.2+, SNI = the host name; we judge the chain and the name
 * ourselves so `may`/`encrypt` go on and `verify` can say why not), then EHLO again; replies
 * pipelined behind the 220 in plain text are dropped. A requirement that cannot be met ends the
 * open with a `tls` fact (never a byte of mail in plain text). AUTH runs only inside TLS; the
 * password is read when needed and goes nowhere else.
 *
 * Who calls it: delivery/pool (open, RSET on reuse, QUIT) and delivery/agent (send()).
 * Failure behaviour: network and peer trouble are facts, never exceptions: a failed connect is an
 * `interrupted` fact on step `connect`; a malformed reply is a framing fault inside a transaction,
 * a lost connection outside one; a spool read error is `interrupted` with `spoolError` set.
 * Misuse (send() while busy) throws DeliveryError DELIVERY_MISUSE. Trust: nothing from the peer.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createConnection, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CLIENT_STEPS, ClientSession, NewlineNormalizer, ReplyReader } from '../protocol/index.js';
import type {
  AttemptFact,
  BodyType,
  Capabilities,
  ClientEvent,
  ClientStepName,
  DsnNotify,
  DsnRet,
  OutboundMessage,
  Reply,
} from '../protocol/index.js';
import type { Clock, Timer } from '../util/index.js';
import { DEFAULT_LONG_LINE_POLICY, LineWrapper, LongLineCounter, MAX_LINE_OCTETS, findLongLine } from './long-lines.js';
import type { LongLinePolicy } from './long-lines.js';
import type { RouteHost } from './mx.js';
import { describeTls, requiresTls } from './tls-policy.js';
import type { TlsRequirement, TlsState } from './tls-policy.js';
import type { TlsFailure } from '../protocol/index.js';

export { MAX_LINE_OCTETS } from './long-lines.js';

/**
 * What one connection must do before it carries mail: the TLS requirement (delivery/tls-policy)
 * and, for a smart host that wants it, client AUTH. Part of the pool key.
 */
export interface ConnectionSecurity {
  readonly tls: TlsRequirement;
  /** Sent only over TLS: a connection that cannot have TLS refuses to AUTH and carries nothing. */
  readonly auth?: { readonly user: string; readonly password: () => Promise<string> };
}

/** One message to deliver, as the queue hands it over (delivery never imports queue/). */
export interface DeliveryJob {
  readonly messageId: string;
  /** '' is the null sender `<>`. */
  readonly sender: string;
  readonly body: BodyType;
  readonly smtputf8: boolean;
  readonly ret?: DsnRet;
  readonly envid?: string;
  readonly recipients: ReadonlyArray<{
    readonly address: string;
    readonly notify?: readonly DsnNotify[] | 'NEVER';
    /** `rfc822;a@b`, as RFC 3461 writes it. */
    readonly orcpt?: string;
  }>;
  /** Octets the store holds: exactly what must reach the peer (before dot-stuffing). */
  readonly size: number;
  /** A fresh stream of the stored body for each try. */
  readonly openBody: () => AsyncIterable<Uint8Array>;
  /**
   * The RFC 1047 window (DESIGN.md invariant 3): awaited right before end-of-data (DATA's final
   * '.' or the BDAT LAST chunk) is written, once per transaction, so the caller can mark the
   * window first (qmgr: QueueStore.markInWindow). If it rejects, end-of-data is never sent: the
   * socket is destroyed, the recipients still open are deferred with a local reply
   * (TransactionResult.windowError), and no further host is tried.
   */
  readonly beforeEndOfData?: () => Promise<void>;
  /** RFC 8689 REQUIRETLS: every hop verified TLS and announcing REQUIRETLS, or a 5.7.30 bounce. */
  readonly requireTls?: true;
}

/** Stable codes for the errors callers may branch on. */
export type DeliveryErrorCode = 'DELIVERY_BAD_JOB' | 'DELIVERY_BAD_ROUTE' | 'DELIVERY_AGENT_CLOSED' | 'DELIVERY_MISUSE';

export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  constructor(
    readonly code: DeliveryErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface ConnectionOptions {
  /** Our EHLO name. */
  readonly hostname: string;
  readonly clock: Clock;
  /** Overrides CLIENT_STEPS timeouts (tests shorten them). `connect` is the TCP connect. */
  readonly timeouts?: Partial<Record<ClientStepName, number>>;
  /** BDAT chunk size in octets (default 64 KiB). */
  readonly chunkSize?: number;
  /** Lines over 998 octets to a peer without BINARYMIME (default 'wrap'); see the header. */
  readonly longLines?: LongLinePolicy;
  /** Trust store for `verify` (PEM CA certificates); undefined: Node's default roots. */
  readonly tlsCa?: string;
}

/** The local reply of the `bounce` policy (issue 3 item 3). */
export const LONG_LINES_REFUSAL: Reply = {
  code: 554,
  enhanced: '5.6.0',
  lines: [`message has lines longer than ${MAX_LINE_OCTETS} octets and the peer lacks BINARYMIME`],
};

/** What one transaction on this connection established, for the agent's report. */
export interface TransactionResult {
  /** `facts[i]` decided message.recipients[i]. */
  readonly facts: readonly AttemptFact[];
  /** How the body went: 'none' when no body was wanted (all refused, pre-flight, lost before). */
  readonly mode: 'data' | 'bdat' | 'none';
  /** Octets read from the spool (before stuffing or normalising). */
  readonly bodyOctets: number;
  /** sha256 (hex) of the spool bytes, when the whole body was read. */
  readonly sha256?: string;
  /** Lines over 998 octets (CRLF excluded) in the part of the body read (≥ 1 when refused). */
  readonly longLines: number;
  /**
   * What the long-lines policy did, present only when a long line met a peer without BINARYMIME
   * (or its BDAT): 'wrapped', 'passed' (sent unchanged), 'refused' (bounce, before MAIL).
   */
  readonly longLineAction?: 'wrapped' | 'passed' | 'refused';
  /** CRLF SP breaks inserted, when wrapped. */
  readonly wrapBreaks?: number;
  /** The facts were written here, before MAIL (long-lines bounce, spool unreadable), not by the peer. */
  readonly local?: true;
  /** The session's framing-fault reason (peer) or ours (byte count), when there was one. */
  readonly framingFault?: string;
  /** The spool could not be read: a local trouble, not the peer's. */
  readonly spoolError?: string;
  /** job.beforeEndOfData rejected (its reason): end-of-data was not sent, the connection dropped. */
  readonly windowError?: string;
  /**
   * The peer decided nothing: the connection was lost before MAIL's reply (every fact
   * `interrupted`, connection-lost, at step `mail`), or that reply was a 421 (the peer closing).
   * No body byte was written. The message may run again on another connection at no risk; the
   * agent does so, once, when this connection was reused without an RSET probe (delivery/pool).
   */
  readonly lostBeforeFirstReply?: true;
}

export type OpenResult =
  | { readonly ok: true; readonly connection: SmtpConnection }
  /** `reached`: TCP connected (the greeting or EHLO failed); false: the connect itself failed. */
  | { readonly ok: false; readonly fact: AttemptFact; readonly reached: boolean; readonly connection?: SmtpConnection };

const DEFAULT_CHUNK = 64 * 1024;

/** `name[address]:port`, as next hops are written in logs and the history. */
export function hostLabel(host: RouteHost): string {
  return `${host.name}[${host.address}]:${host.port}`;
}

function timeoutFor(options: ConnectionOptions, step: ClientStepName): number {
  return options.timeouts?.[step] ?? CLIENT_STEPS[step].timeoutMs;
}

/**
 * Connects and greets. Resolves when the session is ready for a transaction, or with the fact
 * that ended it (connect refused or timed out, greeting/EHLO refused, connection lost).
 */
export function openConnection(host: RouteHost, options: ConnectionOptions, security?: ConnectionSecurity): Promise<OpenResult> {
  return new Promise((resolve) => {
    let settled = false;
    const socket = createConnection({ host: host.address, port: host.port });
    const fail = (cause: 'connection-lost' | 'timeout', detail: string): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      socket.destroy();
      resolve({ ok: false, reached: false, fact: { kind: 'interrupted', step: 'connect', cause, ambiguous: false, detail } });
    };
    const timer = options.clock.setTimer(timeoutFor(options, 'connect'), () => fail('timeout', `no connection after ${timeoutFor(options, 'connect')} ms`));
    const onError = (err: Error): void => fail('connection-lost', errorText(err));
    socket.once('error', onError);
    socket.once('connect', () => {
      if (settled) return;
      settled = true;
      timer.cancel();
      socket.off('error', onError);
      const connection = new SmtpConnection(host, socket, options, security);
      void connection.settled().then((ready) => {
        if (ready) resolve({ ok: true, connection });
        else resolve({ ok: false, reached: true, fact: connection.sessionFact ?? lostFact(connection), connection });
      });
    });
  });
}

/** See TransactionResult.lostBeforeFirstReply: nothing from the peer decided the message. */
function lostBeforeFirstReply(tx: Tx, facts: readonly AttemptFact[]): boolean {
  if (tx.mode !== 'none' || tx.meter.octets > 0) return false; // the body started: never
  const first = tx.firstReply;
  if (first === undefined) return facts.every((f) => f.kind === 'interrupted' && f.cause === 'connection-lost' && f.step === 'mail');
  return first.code === 421 && facts.every((f) => f.kind === 'reply' && f.step === 'mail' && f.reply.code === 421);
}

/** Should not happen (the session reports every failure), but a fact is owed either way. */
function lostFact(c: SmtpConnection): AttemptFact {
  return { kind: 'interrupted', step: 'banner', cause: 'connection-lost', ambiguous: false, detail: c.closeReason ?? 'closed' };
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(code) ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}

/** Counts, hashes and measures line lengths of the body as read from the spool (before any wrap). */
class BodyMeter {
  octets = 0;
  private readonly hash = createHash('sha256');
  private readonly lines = new LongLineCounter();

  get longLines(): number {
    return this.lines.count;
  }

  add(chunk: Uint8Array): void {
    this.octets += chunk.byteLength;
    this.hash.update(chunk);
    this.lines.push(chunk);
  }

  /** At the end of the body: a last line without a line end counts too. */
  finish(): string {
    this.lines.end();
    return this.hash.digest('hex');
  }
}

/** How the body meets the long-lines policy in one transaction, decided when the body starts. */
interface LongLineHandling {
  /** The peer takes any line (BDAT + BINARYMIME): nothing to do, nothing to note. */
  readonly unchanged: boolean;
  /** `wrap`: the stream between the meter and the codec. */
  readonly wrapper: LineWrapper | undefined;
  /** `bounce` after a clean pre-scan: a long line now means the spool changed. */
  readonly guard: boolean;
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

interface Tx {
  readonly job: DeliveryJob;
  readonly size: number;
  /** Recipients in this transaction (a subset of the job's when hosts were tried before). */
  readonly count: number;
  readonly facts: Deferred<readonly AttemptFact[]>;
  readonly meter: BodyMeter;
  mode: 'data' | 'bdat' | 'none';
  longLines: LongLineHandling | undefined;
  pump: Promise<void> | undefined;
  /** The first reply the peer gave in this transaction (MAIL's: replies come in order). */
  firstReply: Reply | undefined;
  decided: boolean;
  stopped: boolean;
  sha256?: string;
  framingFault?: string;
  spoolError?: string;
  windowError?: string;
  pumpError?: unknown;
}

/**
 * The socket ↔ session adapter. States: greeting → ready ⇄ busy (a transaction, RSET) → closed.
 * Only `ready` connections take send(), reset() or quit().
 */
export class SmtpConnection {
  readonly host: RouteHost;
  readonly label: string;
  /** Transactions started on this connection (the pool's reuse limit). */
  transactions = 0;
  /** The fact that ended the session before it was ready (greeting, EHLO, lost). */
  sessionFact: AttemptFact | undefined;
  closeReason: string | undefined;

  /** Plain TCP at first; the TLSSocket after STARTTLS (#raw keeps the TCP socket). */
  #socket: Socket;
  readonly #raw: Socket;
  readonly #options: ConnectionOptions;
  readonly #security: ConnectionSecurity | undefined;

  /** The terms it was opened under (TLS requirement, AUTH): the pool parks it under them. */
  get security(): ConnectionSecurity | undefined {
    return this.#security;
  }
  readonly #session: ClientSession;
  /** Replaced after STARTTLS: nothing read before the handshake may be taken as a reply. */
  #reader = new ReplyReader();
  #tls: TlsState | undefined;
  #tlsTried = false;
  #authTried = false;
  /** The session answered 220 to STARTTLS: replies still buffered are plain-text injection, dropped. */
  #upgrading = false;
  /** What the set-up did that the history should say (STARTTLS refused under `may`, AUTH). */
  readonly #setupNotes: string[] = [];
  readonly #handlers = {
    data: (chunk: Buffer): void => this.#onData(chunk),
    drain: (): void => this.#signal(),
    error: (err: Error): void => {
      this.#socketError ??= errorText(err);
    },
    // The peer's FIN: it will say nothing more, so the session learns now, not at 'close' (which
    // comes a few ticks later), and a body pump stops before it can open the ambiguous window.
    end: (): void => {
      if (!this.#session.closed) this.#apply(this.#session.interrupted('connection-lost', this.#socketError ?? 'the peer closed the connection'));
    },
    close: (): void => this.#onClose(),
  };
  readonly #closed = deferred<void>();
  #ready = false;
  #isClosed = false;
  #timer: Timer | undefined;
  #socketError: string | undefined;
  #tx: Tx | undefined;
  /** Resolved on ready (true) or close (false). */
  #settleWaiters: Array<(ready: boolean) => void> = [];
  /** Woken on every session input, drain and close: the body pump waits on these. */
  #signals: Array<() => void> = [];

  constructor(host: RouteHost, socket: Socket, options: ConnectionOptions, security?: ConnectionSecurity) {
    this.host = host;
    this.label = hostLabel(host);
    this.#socket = socket;
    this.#raw = socket;
    this.#options = options;
    this.#security = security;
    this.#session = new ClientSession({ hostname: options.hostname });
    socket.setNoDelay(true);
    this.#attach(socket);
    this.#armTimer();
  }

  /** TLS as negotiated (version, cipher, verified), or undefined in plain text. */
  get tls(): TlsState | undefined {
    return this.#tls;
  }

  /** One line for logs and the history: `TLS TLSv1.3 …, certificate verified` or `no TLS`. */
  get tlsSummary(): string {
    return [describeTls(this.#tls), ...this.#setupNotes].join('; ');
  }

  #attach(socket: Socket): void {
    socket.on('data', this.#handlers.data);
    socket.on('drain', this.#handlers.drain);
    socket.on('error', this.#handlers.error);
    socket.on('end', this.#handlers.end);
    socket.on('close', this.#handlers.close);
  }

  #detach(socket: Socket): void {
    socket.off('data', this.#handlers.data);
    socket.off('drain', this.#handlers.drain);
    socket.off('error', this.#handlers.error);
    socket.off('end', this.#handlers.end);
    socket.off('close', this.#handlers.close);
  }

  get capabilities(): Capabilities {
    return this.#session.capabilities;
  }

  /** Ready for send(), reset() or quit(). */
  get ready(): boolean {
    return this.#ready && !this.#isClosed;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Resolves once the socket is closed. */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  /** Resolves true when the session is ready for a transaction, false once it can carry none. */
  settled(): Promise<boolean> {
    if (this.#isClosed || this.sessionFact !== undefined) return Promise.resolve(false);
    if (this.#ready) return Promise.resolve(true);
    return new Promise((resolve) => this.#settleWaiters.push(resolve));
  }

  /**
   * One transaction: MAIL, RCPT…, the body, and the final reply. Resolves with one fact per
   * recipient of `message` once the transaction is decided and the body pump has stopped.
   */
  async send(job: DeliveryJob, message: OutboundMessage): Promise<TransactionResult> {
    if (!this.ready || this.#tx !== undefined) throw new DeliveryError('DELIVERY_MISUSE', `send() on ${this.label} while not ready`);
    const refused = await this.#longLinePreflight(job, message);
    if (refused !== undefined) return refused;
    const tx: Tx = {
      job,
      size: message.size,
      count: message.recipients.length,
      facts: deferred(),
      meter: new BodyMeter(),
      mode: 'none',
      longLines: undefined,
      pump: undefined,
      firstReply: undefined,
      decided: false,
      stopped: false,
    };
    this.#tx = tx;
    this.#ready = false;
    this.transactions++;
    try {
      let events: ClientEvent[];
      try {
        events = this.#session.send(message);
      } catch (err) {
        this.#ready = true; // refused before anything was written: still ready
        this.transactions--;
        throw err;
      }
      this.#apply(events);
      const facts = await tx.facts.promise;
      await tx.pump;
      if (tx.pumpError !== undefined) throw tx.pumpError;
      const r: TransactionResult = { facts, mode: tx.mode, bodyOctets: tx.meter.octets, longLines: tx.meter.longLines };
      const handling = tx.longLines;
      const wrapped = handling?.wrapper !== undefined && handling.wrapper.breaks > 0;
      const passed = handling !== undefined && !handling.unchanged && handling.wrapper === undefined && !handling.guard && tx.meter.longLines > 0;
      return {
        ...r,
        ...(wrapped ? { longLineAction: 'wrapped', wrapBreaks: handling.wrapper.breaks } : passed ? { longLineAction: 'passed' } : {}),
        ...(tx.sha256 !== undefined ? { sha256: tx.sha256 } : {}),
        ...(tx.framingFault !== undefined ? { framingFault: tx.framingFault } : {}),
        ...(tx.spoolError !== undefined ? { spoolError: tx.spoolError } : {}),
        ...(tx.windowError !== undefined ? { windowError: tx.windowError } : {}),
        ...(lostBeforeFirstReply(tx, facts) ? { lostBeforeFirstReply: true } : {}),
      };
    } finally {
      this.#tx = undefined;
    }
  }

  /**
   * `bounce`: before MAIL, a body that could hold a long line (over 998 octets, not BINARYMIME)
   * going to a peer without BDAT + BINARYMIME is read once from the spool. A long line (or a
   * spool that cannot be read) decides every recipient here, locally, with nothing written; the
   * connection stays ready for the next message. Undefined: go ahead with the transaction.
   */
  async #longLinePreflight(job: DeliveryJob, message: OutboundMessage): Promise<TransactionResult | undefined> {
    const caps = this.capabilities;
    const policy = this.#options.longLines ?? DEFAULT_LONG_LINE_POLICY;
    if (policy !== 'bounce' || message.body === 'BINARYMIME' || message.size <= MAX_LINE_OCTETS || (caps.chunking && caps.binaryMime)) return undefined;
    this.#ready = false; // busy while reading: no send(), reset() or quit() meanwhile
    let found = false;
    let spoolError: string | undefined;
    try {
      found = await findLongLine(job.openBody());
    } catch (err) {
      spoolError = errorText(err ?? 'spool read failed');
    } finally {
      this.#ready = !this.#isClosed && !this.#session.closed;
    }
    const all = (fact: AttemptFact): readonly AttemptFact[] => message.recipients.map(() => fact);
    if (spoolError !== undefined) {
      const reply: Reply = { code: 451, enhanced: '4.3.0', lines: [`spool read error before MAIL: ${spoolError}`] };
      return { facts: all({ kind: 'reply', step: 'mail', reply }), mode: 'none', bodyOctets: 0, longLines: 0, spoolError, local: true };
    }
    if (found) return { facts: all({ kind: 'reply', step: 'mail', reply: LONG_LINES_REFUSAL }), mode: 'none', bodyOctets: 0, longLines: 1, longLineAction: 'refused', local: true };
    if (!this.#ready) {
      // The peer left while we read: as if the connection had been lost before MAIL.
      const detail = this.closeReason ?? this.#socketError ?? 'closed';
      return { facts: all({ kind: 'interrupted', step: 'mail', cause: 'connection-lost', ambiguous: false, detail }), mode: 'none', bodyOctets: 0, longLines: 0, lostBeforeFirstReply: true };
    }
    return undefined;
  }

  /** RSET before reusing an idle connection (Postfix smtp_rset): true when it is ready again. */
  reset(): Promise<boolean> {
    if (!this.ready) return Promise.resolve(false);
    this.#ready = false;
    const done = this.settled();
    this.#apply(this.#session.rset());
    return done;
  }

  /** QUIT politely when ready, else just close; resolves once the socket is closed. */
  quit(): Promise<void> {
    if (this.ready) {
      this.#ready = false;
      this.#apply(this.#session.quit());
    } else this.destroy('closed without QUIT');
    return this.closed;
  }

  destroy(reason: string): void {
    this.closeReason ??= reason;
    this.#socket.destroy();
    this.#raw.destroy();
  }

  // ── set-up: STARTTLS and AUTH, between the first `ready` and the connection's own ──────────

  /**
   * Runs at each `ready` of the session until the connection is fit for mail: STARTTLS when the
   * requirement asks for it and the peer offers it (or refusal when TLS is required and it
   * cannot be had), then AUTH when the route has credentials, only ever inside TLS.
   */
  #setup(): void {
    if (this.sessionFact !== undefined || this.#isClosed) return;
    const security = this.#security;
    const req = security?.tls;
    if (req !== undefined && !this.#session.tls && !this.#tlsTried && req.policy !== 'none' && req.fallback !== true) {
      if (this.capabilities.starttls) {
        this.#tlsTried = true;
        this.#apply(this.#session.starttls());
        return;
      }
      if (requiresTls(req)) {
        this.#refuse(req.requireTls ? 'requiretls' : 'not-offered', `${this.#needs(req)}: ${this.label} does not offer STARTTLS`);
        return;
      }
    }
    const auth = security?.auth;
    if (auth !== undefined && !this.#authTried) {
      this.#authTried = true;
      if (!this.#session.tls) {
        this.#refuse('not-offered', `AUTH as ${auth.user} is configured for this route and credentials are sent only over TLS; ${this.label} ${this.capabilities.starttls ? 'is reached in plain text (fallback)' : 'does not offer STARTTLS'}`);
        return;
      }
      const offered = this.capabilities.auth;
      const mechanism = offered.includes('PLAIN') ? 'PLAIN' : offered.includes('LOGIN') ? 'LOGIN' : undefined;
      if (mechanism === undefined) {
        this.#setupNotes.push(offered.length === 0 ? 'the peer offers no AUTH: sent unauthenticated' : `the peer offers AUTH ${offered.join(' ')} only (we speak PLAIN, LOGIN): sent unauthenticated`);
      } else {
        void auth.password().then(
          (password) => {
            if (this.#isClosed || this.#session.closed) return;
            this.#setupNotes.push(`AUTH ${mechanism} as ${auth.user}`);
            this.#apply(this.#session.auth(mechanism, auth.user, password));
          },
          (err: unknown) => {
            const reply: Reply = { code: 451, enhanced: '4.7.0', lines: [`AUTH as ${auth.user}: the password file cannot be read: ${errorText(err)}`] };
            this.sessionFact ??= { kind: 'reply', step: 'auth', reply };
            this.#settle(false);
            if (this.#session.closed) return;
            this.#apply(this.#session.quit());
          },
        );
        return;
      }
    }
    this.#ready = true;
    this.#settle(true);
  }

  /** `TLS required by policy verify (route 'x')`, the start of every refusal reason. */
  #needs(req: TlsRequirement): string {
    return req.requireTls ? `TLS required by REQUIRETLS (RFC 8689, policy ${req.policy})` : `TLS required by policy ${req.policy} (${req.source})`;
  }

  /** The policy forbids this connection: the fact for every recipient, then QUIT (or close). */
  #refuse(failure: TlsFailure, detail: string): void {
    this.sessionFact ??= { kind: 'tls', step: this.#session.tls ? 'ehlo' : 'starttls', failure, detail };
    this.#settle(false);
    if (this.#session.closed) return;
    if (this.#upgrading || this.#session.awaiting === 'starttls') {
      // Mid-handshake or just after it: nothing polite to say in a channel we refuse.
      this.#apply(this.#session.interrupted('connection-lost', detail));
      this.destroy(detail);
      return;
    }
    this.#apply(this.#session.quit());
  }

  /** 220 to STARTTLS: the handshake on this socket; the session goes on in TLS or the connection ends. */
  #startTls(): void {
    const req = this.#security?.tls;
    if (req === undefined) return;
    this.#upgrading = true;
    const raw = this.#socket;
    this.#detach(raw);
    const name = req.names[0] ?? this.host.name;
    const socket: TLSSocket = tlsConnect({
      socket: raw,
      // SNI takes a host name only (RFC 6066 §3); an address smart host goes without.
      ...(isIP(name) === 0 ? { servername: name } : {}),
      minVersion: 'TLSv1.2',
      // We decide (below), so `may` and `encrypt` can go on and `verify` can say why not.
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      ...(this.#options.tlsCa !== undefined ? { ca: this.#options.tlsCa } : {}),
    });
    this.#socket = socket;
    // Until the handshake ends, an error, a FIN or a close is the handshake's failure (with the
    // policy's words), not a lost session; the usual handlers take over once it is secure.
    let failed = false;
    const handshakeFailed = (why: string): void => {
      if (failed || this.#tls !== undefined) return;
      failed = true;
      const detail = `TLS handshake with ${this.label} failed: ${why}`;
      this.#refuse('handshake', requiresTls(req) ? `${this.#needs(req)}: ${detail}` : detail);
    };
    const onError = (err: Error): void => handshakeFailed(tlsErrorText(err));
    const onEnd = (): void => handshakeFailed('the peer closed the connection');
    socket.on('error', onError);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    // After onEnd/onError (registration order): the bookkeeping every close needs.
    socket.on('error', this.#handlers.error);
    socket.on('close', this.#handlers.close);
    socket.once('secureConnect', () => {
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.on('data', this.#handlers.data);
      socket.on('drain', this.#handlers.drain);
      socket.on('end', this.#handlers.end);
      const state = tlsState(socket, req.names);
      this.#tls = state;
      this.#upgrading = false;
      if ((req.policy === 'verify' || req.requireTls) && !state.verified) {
        this.#refuse('unverified', `${this.#needs(req)}: ${state.unverifiedReason ?? 'certificate not verified'}`);
        return;
      }
      this.#reader = new ReplyReader();
      this.#apply(this.#session.tlsEstablished());
    });
  }

  // ── the session's side ────────────────────────────────────────────────────────────────

  #apply(events: readonly ClientEvent[]): void {
    const tx = this.#tx;
    for (const e of events) {
      switch (e.kind) {
        case 'write':
          if (!this.#socket.destroyed) this.#socket.write(e.data);
          break;
        case 'ready':
          this.#setup();
          break;
        case 'start-tls':
          this.#startTls();
          break;
        case 'starttls-refused': {
          const req = this.#security?.tls;
          const said = `${e.reply.code}${e.reply.enhanced !== undefined ? ` ${e.reply.enhanced}` : ''} ${e.reply.lines[0] ?? ''}`.trim();
          if (req !== undefined && requiresTls(req)) this.#refuse(req.requireTls ? 'requiretls' : 'not-offered', `${this.#needs(req)}: ${this.label} refused STARTTLS (${said})`);
          else this.#setupNotes.push(`STARTTLS refused (${said}): plain text under policy may`);
          break;
        }
        case 'authenticated':
          break;
        case 'session-failed':
          // The open is over (a QUIT may still be on its way): no need to wait for its reply.
          this.sessionFact ??= e.fact;
          this.#settle(false);
          break;
        case 'send-body':
          if (tx) {
            tx.mode = e.mode;
            tx.pump ??= (e.mode === 'data' ? this.#pumpData(tx) : this.#pumpBdat(tx)).catch((err: unknown) => {
              // A bug in the pump or the codec: close (the session reports the recipients as
              // interrupted), then send() rethrows it so the caller crashes loudly, not hangs.
              tx.pumpError = err;
              this.destroy(`internal error: ${errorText(err)}`);
            });
          }
          break;
        case 'stop-body':
          if (tx) tx.stopped = true;
          break;
        case 'transaction':
          if (tx && !tx.decided) {
            tx.decided = true;
            tx.facts.resolve(e.facts);
          }
          break;
        case 'framing-fault':
          if (tx) tx.framingFault ??= e.reason;
          break;
        case 'close':
          // Destroy, not end: bytes still buffered (a body after a framing fault) must not leave.
          this.closeReason ??= e.reason;
          this.#socket.destroy();
          break;
      }
    }
    this.#armTimer();
    this.#signal();
  }

  /** The timer always belongs to the step awaited now, restarted on every input or progress. */
  #armTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    const step = this.#session.awaiting;
    if (step === undefined || this.#isClosed) return;
    this.#timer = this.#options.clock.setTimer(timeoutFor(this.#options, step), () => {
      this.#timer = undefined;
      this.#apply(this.#session.interrupted('timeout', `no reply within ${timeoutFor(this.#options, step)} ms`));
    });
  }

  #onData(chunk: Buffer): void {
    if (this.#session.closed || this.#upgrading) return;
    let replies: Reply[];
    try {
      replies = this.#reader.push(chunk);
    } catch (err) {
      // The stream cannot be read further: inside a transaction that is a framing fault (we no
      // longer know what the peer did with our bytes); outside one, simply a failed session.
      const detail = `unreadable reply: ${errorText(err)}`;
      this.#apply(this.#tx ? this.#session.fault(detail) : this.#session.interrupted('connection-lost', detail));
      return;
    }
    // All replies of one read are handled before the pump runs again, so a 250 arriving with the
    // 354 is seen as the framing fault it is, before any body byte is written.
    for (const r of replies) {
      // After 220 to STARTTLS, anything else in the plain-text stream is injection: dropped.
      if (this.#session.closed || this.#upgrading) break;
      if (this.#tx) this.#tx.firstReply ??= r;
      this.#apply(this.#session.receive(r));
    }
  }

  #onClose(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (!this.#session.closed) this.#apply(this.#session.interrupted('connection-lost', this.#socketError));
    this.#isClosed = true;
    this.#ready = false;
    this.closeReason ??= this.#socketError ?? 'connection closed';
    // Every waiter learns the end: a transaction undecided here would be a session bug.
    const tx = this.#tx;
    if (tx && !tx.decided) {
      tx.decided = true;
      tx.facts.resolve(Array.from({ length: tx.count }, () => ({ kind: 'interrupted', step: 'data-block', cause: 'connection-lost', ambiguous: false, detail: 'closed' })));
    }
    this.#settle(false);
    this.#signal();
    this.#closed.resolve();
  }

  #settle(ready: boolean): void {
    const waiters = this.#settleWaiters;
    this.#settleWaiters = [];
    for (const w of waiters) w(ready);
  }

  #signal(): void {
    const signals = this.#signals;
    this.#signals = [];
    for (const s of signals) s();
  }

  #nextSignal(): Promise<void> {
    return new Promise((resolve) => this.#signals.push(resolve));
  }

  #write(data: Uint8Array | string): void {
    this.#socket.write(data);
  }

  /** Waits for the socket buffer to drain; false when the body must stop (closed or decided). */
  async #drained(tx: Tx): Promise<boolean> {
    while (this.#socket.writableNeedDrain && !this.#isClosed && !tx.decided) await this.#nextSignal();
    return !this.#isClosed && !tx.decided;
  }

  // ── the body ──────────────────────────────────────────────────────────────────────────

  /** Decided once per transaction, when the body starts (the mode and the peer are known). */
  #longLineHandling(tx: Tx, mode: 'data' | 'bdat'): LongLineHandling {
    const unchanged = tx.job.body === 'BINARYMIME' || (mode === 'bdat' && this.capabilities.binaryMime);
    const policy = this.#options.longLines ?? DEFAULT_LONG_LINE_POLICY;
    const handling: LongLineHandling = {
      unchanged,
      wrapper: !unchanged && policy === 'wrap' ? new LineWrapper() : undefined,
      guard: !unchanged && policy === 'bounce',
    };
    tx.longLines = handling;
    return handling;
  }

  /** The spool bytes as the peer gets them (wrapped or not); false when the guard stopped the body. */
  #filter(tx: Tx, handling: LongLineHandling, chunk: Uint8Array | undefined): readonly Uint8Array[] | false {
    if (handling.guard && tx.meter.longLines > 0) {
      tx.framingFault = `a line over ${MAX_LINE_OCTETS} octets was read after the long-lines pre-scan found none: the spool changed`;
      this.#apply(this.#session.fault(tx.framingFault));
      return false;
    }
    if (chunk === undefined) return handling.wrapper?.end() ?? [];
    return handling.wrapper ? handling.wrapper.push(chunk) : [chunk];
  }

  /** Dot-stuffs pieces of the body into one buffer to write (undefined: nothing to write). */
  #stuff(pieces: readonly Uint8Array[]): Buffer | undefined {
    const out: Buffer[] = [];
    for (const piece of pieces) out.push(...this.#session.dataChunk(piece));
    return out.length === 0 ? undefined : out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }

  /** Several buffers in one socket write (one writev), so the peer gets them in one segment. */
  #writeTogether(parts: readonly Uint8Array[]): void {
    this.#socket.cork();
    for (const part of parts) this.#socket.write(part);
    this.#socket.uncork();
  }

  /**
   * Reads the whole body from the spool for either pump: each chunk is counted and hashed as read
   * (the framing guard counts what the spool holds, before any wrap), then passed through the
   * long-line filter and handed to `send`. Returns the filter's final pieces once the body is read
   * in full and matches what was accepted; false when the pump must stop (no longer `wanted`,
   * `send` said stop, a spool error or a size fault, each already reported).
   */
  async #readBody(
    tx: Tx,
    handling: LongLineHandling,
    wanted: () => boolean,
    send: (pieces: readonly Uint8Array[]) => Promise<boolean>,
  ): Promise<readonly Uint8Array[] | false> {
    const body = openSpool(tx.job);
    try {
      for (;;) {
        const next = await body.next();
        if (!wanted()) return false;
        if (next.error !== undefined) return this.#spoolFailed(tx, next.error), false;
        if (next.chunk === undefined) break;
        tx.meter.add(next.chunk);
        if (tx.meter.octets > tx.size) return this.#sizeFault(tx), false;
        const pieces = this.#filter(tx, handling, next.chunk);
        if (pieces === false || !(await send(pieces))) return false;
      }
      tx.sha256 = tx.meter.finish();
      if (tx.meter.octets !== tx.size) return this.#sizeFault(tx), false;
      return this.#filter(tx, handling, undefined);
    } finally {
      await body.close();
    }
  }

  /**
   * DATA: one write per spool chunk (a dot-heavy chunk stuffs into hundreds of small pieces),
   * one behind: the stuffed chunk is held until the next one is read, so the last one goes out
   * with the terminator in one write (for a body of one chunk, the whole delivery is two writes:
   * MAIL/RCPT/DATA, then body and '.'). The held tail is at most one chunk; on a size or framing
   * fault, a spool error or a failed window mark it is never written, nor the terminator.
   */
  async #pumpData(tx: Tx): Promise<void> {
    const handling = this.#longLineHandling(tx, 'data');
    let held: Buffer | undefined;
    const rest = await this.#readBody(tx, handling, () => this.#session.sending === 'data', async (pieces) => {
      const stuffed = this.#stuff(pieces);
      if (stuffed === undefined) return true;
      if (held !== undefined) this.#write(held);
      held = stuffed;
      this.#armTimer(); // data-block: per write
      return this.#drained(tx);
    });
    if (rest === false) return;
    const last = this.#stuff(rest);
    const tail = held === undefined ? last : last === undefined ? held : Buffer.concat([held, last]);
    if (!(await this.#enterWindow(tx))) return;
    await settleIo();
    if (this.#session.sending !== 'data') return;
    const end = this.#session.dataEnd();
    if (tail === undefined) this.#write(end);
    else this.#writeTogether([tail, end]);
    this.#armTimer();
  }

  async #pumpBdat(tx: Tx): Promise<void> {
    const handling = this.#longLineHandling(tx, 'bdat');
    const chunkSize = this.#options.chunkSize ?? DEFAULT_CHUNK;
    // BDAT carries bytes as they are; only a BINARYMIME body may hold bare CR or LF (invariant 4).
    const normalizer = tx.job.body === 'BINARYMIME' ? undefined : new NewlineNormalizer('normalize');
    let held: Buffer[] = [];
    let heldLength = 0;
    const take = (n: number): Buffer => {
      const all = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, heldLength);
      const out = all.subarray(0, n);
      const rest = all.subarray(n);
      held = rest.length > 0 ? [rest] : [];
      heldLength = rest.length;
      return out;
    };
    const keep = (pieces: Iterable<Buffer>): void => {
      for (const piece of pieces) {
        held.push(piece);
        heldLength += piece.length;
      }
    };
    const hold = (chunk: Uint8Array): void => keep(normalizer ? normalizer.push(chunk) : [Buffer.from(chunk)]);
    const rest = await this.#readBody(tx, handling, () => !this.#bdatOver(tx), async (pieces) => {
      for (const p of pieces) hold(p);
      // Strictly more than a chunk: something always remains to go out with LAST.
      while (heldLength > chunkSize) if (!(await this.#sendChunk(tx, take(chunkSize), false))) return false;
      return true;
    });
    if (rest === false) return;
    for (const p of rest) hold(p);
    keep(normalizer?.end() ?? []);
    if (this.#bdatOver(tx) || !(await this.#enterWindow(tx))) return;
    await settleIo();
    await this.#sendChunk(tx, take(heldLength), true);
  }

  /** The body is no longer wanted: decided, stopped by a refused chunk, or closed. */
  #bdatOver(tx: Tx): boolean {
    return this.#isClosed || this.#session.closed || tx.decided || tx.stopped;
  }

  /** Writes one BDAT chunk when the session wants it (lock-step without PIPELINING). */
  async #sendChunk(tx: Tx, bytes: Buffer, last: boolean): Promise<boolean> {
    while (this.#session.sending !== 'bdat') {
      if (this.#bdatOver(tx)) return false;
      await this.#nextSignal();
    }
    const command = this.#session.bdatChunk(bytes.length, last);
    if (bytes.length === 0) this.#write(command);
    else this.#writeTogether([Buffer.from(command, 'latin1'), bytes]);
    this.#armTimer();
    return this.#drained(tx);
  }

  /**
   * job.beforeEndOfData, awaited before end-of-data: true to go on (the pump's own checks still
   * follow). When it rejects, the window is never entered unmarked: the session is interrupted
   * (the socket destroyed, nothing more written; the recipients still open get a non-ambiguous
   * interrupted fact) and windowError says why.
   */
  async #enterWindow(tx: Tx): Promise<boolean> {
    const mark = tx.job.beforeEndOfData;
    if (mark === undefined) return true;
    try {
      await mark();
      return true;
    } catch (err) {
      tx.windowError = errorText(err ?? 'beforeEndOfData rejected');
      this.#apply(this.#session.interrupted('connection-lost', `end-of-data not sent: ${tx.windowError}`));
      this.destroy(`end-of-data not sent: ${tx.windowError}`);
      return false;
    }
  }

  #sizeFault(tx: Tx): void {
    const reason =
      tx.meter.octets > tx.size
        ? `the spool holds more than the ${tx.size} octets accepted (read ${tx.meter.octets} so far)`
        : `read ${tx.meter.octets} octets from the spool, ${tx.size} were accepted`;
    tx.framingFault = reason;
    this.#apply(this.#session.fault(reason));
  }

  #spoolFailed(tx: Tx, err: unknown): void {
    tx.spoolError = errorText(err);
    this.#apply(this.#session.interrupted('connection-lost', `spool read error: ${tx.spoolError}`));
  }
}

/** OpenSSL's errors carry `reason` ('wrong version number'); its message is a line of internals. */
function tlsErrorText(err: Error): string {
  const { code, reason } = err as Error & { code?: string; reason?: string };
  if (typeof reason === 'string' && reason !== '') return code !== undefined ? `${reason} (${code})` : reason;
  return errorText(err).replace(/\s+/g, ' ').trim();
}

/** What the handshake gave: chain verified against the trust store, and a name matched. */
function tlsState(socket: TLSSocket, names: readonly string[]): TlsState {
  const version = socket.getProtocol() ?? 'TLS';
  const cipher = socket.getCipher()?.name ?? 'unknown';
  if (!socket.authorized) {
    const why = socket.authorizationError;
    return { version, cipher, verified: false, unverifiedReason: `certificate not trusted: ${why instanceof Error ? why.message : String(why ?? 'unknown')}` };
  }
  const cert = socket.getPeerCertificate();
  let mismatch: string | undefined;
  for (const name of names) {
    const err = checkServerIdentity(name, cert);
    if (err === undefined) return { version, cipher, verified: true };
    mismatch ??= err.message;
  }
  return { version, cipher, verified: false, unverifiedReason: `certificate name mismatch: ${mismatch ?? 'no name to check'}` };
}

/**
 * Lets pending socket events (a reset, a FIN, an early reply) run before the ambiguous window
 * opens. Two turns: the first may run in the same loop iteration's check phase; the second comes
 * after one more I/O poll.
 */
async function settleIo(): Promise<void> {
  await nextTurn();
  await nextTurn();
}

/** The spool stream as next() results that never throw: a read error is a value. */
function openSpool(job: DeliveryJob): {
  next(): Promise<{ readonly chunk?: Uint8Array; readonly error?: unknown }>;
  close(): Promise<void>;
} {
  let it: AsyncIterator<Uint8Array> | undefined;
  let openError: unknown;
  try {
    it = job.openBody()[Symbol.asyncIterator]();
  } catch (err) {
    openError = err ?? new Error('openBody failed');
  }
  let done = false;
  return {
    async next() {
      if (it === undefined) return { error: openError };
      try {
        const r = await it.next();
        if (r.done) {
          done = true;
          return {};
        }
        return { chunk: r.value };
      } catch (err) {
        done = true;
        return { error: err ?? new Error('spool read failed') };
      }
    },
    async close() {
      if (done || it === undefined) return;
      done = true;
      try {
        await it.return?.();
      } catch {
        // Closing a half-read spool file cannot change the outcome.
      }
    },
  };
}
