/**
 * A scriptable SMTP sink for delivery tests (KumoMTA's maildir-sink, chasquid's fakeserver):
 * listens on 127.0.0.1 port 0, accepts what it is told to, and records every transaction
 * byte-exact. Its parser is its own (not Postwire's codec), so a codec bug cannot hide itself.
 *
 * Misbehaviour is driven by magic recipient local parts, so one sink serves many scenarios:
 *   tempfail-rcpt-once-…   451 to RCPT the first time this address is seen, then 250
 *   reject-…               550 5.1.1 to RCPT, every time
 *   tempfail-data-once-…   451 after end-of-data the first time, then 250
 *   drop-in-data-once-…    close the connection in the middle of DATA the first time
 *   early-250-…            answer 250 before the client's end-of-data (a broken receiver)
 *   slow-…                 wait `slowMs` before the end-of-data reply
 *   always-451-…           451 after end-of-data, every time
 * The first magic recipient of a transaction decides its DATA behaviour.
 *
 * TLS and AUTH (issue 6): with `tls` (a key and certificate, e.g. from test/support/test-ca) the
 * sink announces STARTTLS, answers it with 220 (or `starttlsReply`) and runs the handshake on the
 * same socket, forgetting everything before it (RFC 3207); with `auth` it announces AUTH PLAIN
 * LOGIN (after TLS only, unless `authBeforeTls`), checks the credentials (235 or 535) and, with
 * `requireAuth`, refuses MAIL before AUTH (530). Every command line is kept in `lines` with
 * whether it came inside TLS, so a test can prove nothing was sent in plain text.
 */
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { TLSSocket, createSecureContext } from 'node:tls';

export interface SinkTransaction {
  readonly mailFrom: string;
  readonly rcpts: string[];
  /** The message as the sink stored it: un-stuffed DATA, or the concatenated BDAT chunks. */
  readonly data: Buffer;
  readonly via: 'DATA' | 'BDAT';
  /** The raw MAIL FROM and RCPT lines (parameters included). */
  readonly commands: string[];
  /** The transaction ran inside TLS: the negotiated protocol (`TLSv1.3`), else undefined. */
  readonly tls?: string;
  /** The AUTH identity of the session, when it authenticated. */
  readonly authUser?: string;
  /** When MAIL FROM arrived (Date.now()): when the client started this transaction. */
  readonly startedAt: number;
}

/** One command line as the sink read it. */
export interface SinkLine {
  readonly line: string;
  readonly tls: boolean;
}

export interface FakeSmtpOptions {
  /** EHLO keywords after the greeting line; default: PIPELINING, 8BITMIME, SMTPUTF8, SIZE 104857600. */
  readonly extensions?: readonly string[];
  readonly slowMs?: number;
  readonly banner?: string;
  /** Offer STARTTLS with this certificate; after the handshake `extensions` are announced again (without STARTTLS). */
  readonly tls?: { readonly key: string; readonly cert: string };
  /** The reply to STARTTLS (default `220 2.0.0 ready to start TLS`); a non-220 refuses it. */
  readonly starttlsReply?: string;
  /** Accept AUTH PLAIN/LOGIN with these credentials. */
  readonly auth?: { readonly user: string; readonly password: string };
  /** Announce AUTH before TLS too (a careless server: the client must still not use it). */
  readonly authBeforeTls?: boolean;
  /** 530 5.7.0 to MAIL before a successful AUTH. */
  readonly requireAuth?: boolean;
}

export interface FakeSmtpServer {
  readonly port: number;
  readonly transactions: SinkTransaction[];
  /** Transactions whose end-of-data got a 250. */
  readonly delivered: SinkTransaction[];
  readonly sessions: number;
  /** Most connections open at once (idle pooled ones included). */
  readonly maxConcurrent: number;
  /** Most transactions (MAIL FROM to the end-of-data reply) in progress at once: concurrent deliveries. */
  readonly maxConcurrentTransactions: number;
  /** Every command line received (SASL responses included), in order, marked in or outside TLS. */
  readonly lines: SinkLine[];
  close(): Promise<void>;
}

const DEFAULT_EXTENSIONS = ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'SIZE 104857600'];

export async function startFakeSmtp(options: FakeSmtpOptions = {}): Promise<FakeSmtpServer> {
  const seen = new Set<string>();
  const transactions: SinkTransaction[] = [];
  const delivered: SinkTransaction[] = [];
  const lines: SinkLine[] = [];
  const sockets = new Set<Socket>();
  let sessions = 0;
  let maxConcurrent = 0;
  const tx = { active: 0, max: 0 };
  const once = (key: string): boolean => {
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  };
  const server: Server = createServer((socket) => {
    sessions++;
    socket.setNoDelay(true);
    sockets.add(socket);
    maxConcurrent = Math.max(maxConcurrent, sockets.size);
    socket.on('error', () => undefined);
    const session = new SinkSession(socket, options, once, (t, ok) => {
      transactions.push(t);
      if (ok) delivered.push(t);
    }, tx, lines);
    socket.on('close', () => {
      sockets.delete(socket);
      session.closed();
    });
    session.start();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    transactions,
    delivered,
    lines,
    get sessions() {
      return sessions;
    },
    get maxConcurrent() {
      return maxConcurrent;
    },
    get maxConcurrentTransactions() {
      return tx.max;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

type Mode = { kind: 'command' } | { kind: 'data'; early: boolean } | { kind: 'bdat'; remaining: number; last: boolean };

class SinkSession {
  private buffer = Buffer.alloc(0);
  private mode: Mode = { kind: 'command' };
  private mailFrom = '';
  private startedAt = 0;
  private rcpts: string[] = [];
  private commands: string[] = [];
  private body: Buffer[] = [];
  private tail = Buffer.from('\r\n');
  private dataLength = 0;

  constructor(
    private socket: Socket,
    private readonly options: FakeSmtpOptions,
    private readonly once: (key: string) => boolean,
    private readonly record: (t: SinkTransaction, delivered: boolean) => void,
    private readonly tx: { active: number; max: number } = { active: 0, max: 0 },
    private readonly lines: SinkLine[] = [],
  ) {}

  /** The TLS protocol once STARTTLS completed. */
  private tlsProtocol: string | undefined;
  private authUser: string | undefined;
  /** AUTH LOGIN in progress: what the next line is. */
  private login: { stage: 'user' } | { stage: 'password'; user: string } | undefined;

  private inTransaction = false;

  /** The socket closed: a transaction in progress ends with it. */
  closed(): void {
    this.endTransaction();
  }

  private startTransaction(): void {
    if (this.inTransaction) return;
    this.inTransaction = true;
    this.tx.active++;
    this.tx.max = Math.max(this.tx.max, this.tx.active);
  }

  private endTransaction(): void {
    if (!this.inTransaction) return;
    this.inTransaction = false;
    this.tx.active--;
  }

  start(): void {
    this.say(`220 ${this.options.banner ?? 'sink.test ESMTP fake'}`);
    this.listen(this.socket);
  }

  private listen(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.pump();
    });
  }

  /** 220, then the handshake; commands pipelined behind STARTTLS are discarded (CVE-2011-0411). */
  private startTls(): void {
    const tls = this.options.tls;
    if (tls === undefined) return this.say('502 5.5.1 STARTTLS not offered');
    const reply = this.options.starttlsReply ?? '220 2.0.0 ready to start TLS';
    this.say(reply);
    if (!reply.startsWith('220')) return;
    const raw = this.socket;
    raw.removeAllListeners('data');
    this.buffer = Buffer.alloc(0);
    const secure = new TLSSocket(raw, { isServer: true, secureContext: createSecureContext({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' }) });
    secure.on('error', () => raw.destroy());
    secure.once('secure', () => {
      this.tlsProtocol = secure.getProtocol() ?? 'TLS';
      this.reset();
      this.authUser = undefined;
    });
    this.socket = secure;
    this.listen(secure);
  }

  private ehloLines(): string[] {
    const ext = [...(this.options.extensions ?? DEFAULT_EXTENSIONS)];
    if (this.options.tls !== undefined && this.tlsProtocol === undefined) ext.push('STARTTLS');
    if (this.options.auth !== undefined && (this.tlsProtocol !== undefined || this.options.authBeforeTls === true)) ext.push('AUTH PLAIN LOGIN');
    return ext;
  }

  /** AUTH PLAIN [ir] / AUTH LOGIN and the lines that answer 334. */
  private authStep(line: string): void {
    const want = this.options.auth;
    const b64 = (t: string): string => Buffer.from(t, 'base64').toString('utf8');
    const check = (user: string, password: string): void => {
      this.login = undefined;
      if (want !== undefined && user === want.user && password === want.password) {
        this.authUser = user;
        this.say('235 2.7.0 Authentication successful');
      } else this.say('535 5.7.8 Authentication credentials invalid');
    };
    if (this.login?.stage === 'user') {
      this.login = { stage: 'password', user: b64(line) };
      return this.say('334 UGFzc3dvcmQ6');
    }
    if (this.login?.stage === 'password') return check(this.login.user, b64(line));
    const [, mech = '', ir] = line.split(' ');
    if (want === undefined) return this.say('502 5.5.1 AUTH not offered');
    if (mech.toUpperCase() === 'LOGIN') {
      this.login = { stage: 'user' };
      return this.say('334 VXNlcm5hbWU6');
    }
    if (mech.toUpperCase() === 'PLAIN' && ir !== undefined) {
      const [, user = '', password = ''] = b64(ir).split('\0');
      return check(user, password);
    }
    this.say('504 5.5.4 mechanism not supported');
  }

  private say(line: string): void {
    if (!this.socket.destroyed) this.socket.write(`${line}\r\n`);
  }

  private pump(): void {
    for (;;) {
      if (this.socket.destroyed) return;
      if (this.mode.kind === 'bdat') {
        const take = Math.min(this.mode.remaining, this.buffer.length);
        this.body.push(this.buffer.subarray(0, take));
        this.buffer = this.buffer.subarray(take);
        this.mode.remaining -= take;
        if (this.mode.remaining > 0) return;
        const last = this.mode.last;
        this.mode = { kind: 'command' };
        if (last) this.endOfMessage('BDAT');
        else this.say('250 2.0.0 chunk ok');
        continue;
      }
      if (this.mode.kind === 'data') {
        // Search CRLF.CRLF across chunk edges: the window is the last 4 data bytes seen (at the
        // start, the CRLF that ended the DATA command) followed by the new bytes.
        const window = Buffer.concat([this.tail, this.buffer]);
        const idx = window.indexOf('\r\n.\r\n');
        if (idx < 0) {
          this.body.push(this.buffer);
          this.dataLength += this.buffer.length;
          this.tail = window.subarray(Math.max(0, window.length - 4));
          this.buffer = Buffer.alloc(0);
          this.maybeDrop();
          return;
        }
        const terminatorAt = this.dataLength - this.tail.length + idx; // absolute; -2 = empty message
        const consumed = terminatorAt + 5 - this.dataLength;
        this.body.push(this.buffer.subarray(0, Math.max(0, consumed)));
        this.buffer = this.buffer.subarray(consumed);
        const all = Buffer.concat(this.body);
        this.body = terminatorAt < 0 ? [] : [all.subarray(0, terminatorAt + 2)];
        this.mode = { kind: 'command' };
        this.endOfMessage('DATA');
        continue;
      }
      const eol = this.buffer.indexOf('\r\n');
      if (eol < 0) return;
      const line = this.buffer.subarray(0, eol).toString('utf8');
      this.buffer = this.buffer.subarray(eol + 2);
      this.lines.push({ line, tls: this.tlsProtocol !== undefined });
      if (this.login !== undefined) {
        this.authStep(line);
        continue;
      }
      const before = this.socket;
      this.command(line);
      if (this.socket !== before) return; // STARTTLS: what followed it in the plain stream is dropped
    }
  }

  private command(line: string): void {
    const verb = line.split(' ')[0]?.toUpperCase() ?? '';
    if (verb === 'STARTTLS') return this.startTls();
    if (verb === 'AUTH') return this.authStep(line);
    if (verb === 'EHLO') {
      const ext = this.ehloLines();
      const lines = ['sink.test', ...ext];
      lines.forEach((l, i) => this.say(`250${i === lines.length - 1 ? ' ' : '-'}${l}`));
    } else if (verb === 'HELO') this.say('250 sink.test');
    else if (verb === 'MAIL') {
      if (this.options.requireAuth === true && this.authUser === undefined) return this.say('530 5.7.0 Authentication required');
      this.reset();
      this.startTransaction();
      this.mailFrom = /<([^>]*)>/.exec(line)?.[1] ?? '';
      this.startedAt = Date.now();
      this.commands.push(line);
      this.say('250 2.1.0 ok');
    } else if (verb === 'RCPT') {
      const rcpt = /<([^>]*)>/.exec(line)?.[1] ?? '';
      this.commands.push(line);
      const local = rcpt.split('@')[0] ?? '';
      if (local.startsWith('reject-')) this.say(`550 5.1.1 <${rcpt}>: Recipient address rejected: User unknown`);
      else if (local.startsWith('tempfail-rcpt-once-') && this.once(`rcpt:${rcpt}`)) this.say('451 4.3.0 try again later');
      else {
        this.rcpts.push(rcpt);
        this.say('250 2.1.5 ok');
      }
    } else if (verb === 'DATA') {
      if (this.rcpts.length === 0) return this.say('554 5.5.1 no valid recipients');
      this.say('354 go ahead');
      this.tail = Buffer.from('\r\n');
      this.dataLength = 0;
      this.body = [];
      const early = this.magic('early-250-') !== undefined;
      this.mode = { kind: 'data', early };
      if (early) this.say('250 2.0.0 ok: queued early');
    } else if (verb === 'BDAT') {
      const m = /^BDAT (\d+)( LAST)?$/i.exec(line);
      if (!m) return this.say('501 5.5.4 bad BDAT');
      this.mode = { kind: 'bdat', remaining: Number(m[1]), last: m[2] !== undefined };
    } else if (verb === 'RSET') {
      this.reset();
      this.say('250 2.0.0 ok');
    } else if (verb === 'NOOP') this.say('250 2.0.0 ok');
    else if (verb === 'QUIT') {
      this.say('221 2.0.0 bye');
      this.socket.end();
    } else this.say('500 5.5.1 unknown command');
  }

  private magic(prefix: string): string | undefined {
    return this.rcpts.find((r) => r.startsWith(prefix));
  }

  private maybeDrop(): void {
    const rcpt = this.magic('drop-in-data-once-');
    if (rcpt && this.once(`drop:${rcpt}`)) {
      this.record(this.transaction('DATA'), false);
      this.socket.destroy();
    }
  }

  private endOfMessage(via: 'DATA' | 'BDAT'): void {
    const t = this.transaction(via);
    const tempfail = this.magic('tempfail-data-once-');
    const always = this.magic('always-451-');
    const early = this.mode.kind === 'command' && this.magic('early-250-') !== undefined && via === 'DATA';
    const reply = (): void => {
      if (always || (tempfail && this.once(`data:${tempfail}`))) {
        this.record(t, false);
        this.say('451 4.3.0 temporary failure after end-of-data');
      } else {
        this.record(t, true);
        if (!early) this.say('250 2.0.0 ok: queued');
      }
      this.reset();
    };
    if (this.magic('slow-') && this.options.slowMs) setTimeout(reply, this.options.slowMs);
    else reply();
  }

  private transaction(via: 'DATA' | 'BDAT'): SinkTransaction {
    const raw = Buffer.concat(this.body);
    const data = via === 'DATA' ? unstuff(raw) : raw;
    return {
      mailFrom: this.mailFrom,
      rcpts: [...this.rcpts],
      data,
      via,
      commands: [...this.commands],
      ...(this.tlsProtocol !== undefined ? { tls: this.tlsProtocol } : {}),
      ...(this.authUser !== undefined ? { authUser: this.authUser } : {}),
      startedAt: this.startedAt,
    };
  }

  private reset(): void {
    this.endTransaction();
    this.mailFrom = '';
    this.rcpts = [];
    this.commands = [];
    this.body = [];
  }
}

/** DATA content to message: drop the leading dot of each line (lines end at CRLF only). */
function unstuff(raw: Buffer): Buffer {
  return Buffer.from(raw.toString('latin1').replace(/(^|\r\n)\./g, '$1'), 'latin1');
}
