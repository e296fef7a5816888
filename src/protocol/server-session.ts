/**
 * @module protocol/server-session
 * The inbound SMTP state machine, pure: parsed commands in, decisions out. It knows the RFC 5321
 * command order, the ESMTP extensions Postwire offers (RFC 1870, 2920, 3030, 3461, 6152, 6531,
 * 2034, and when configured STARTTLS 3207, AUTH PLAIN/LOGIN 4954, REQUIRETLS 8689) and the
 * limits it was given; it never touches a socket, a file or a clock.
 *
 * Who calls it: smtpd/connection, which performs the effects a decision asks for (a policy
 * check, opening a message, consuming a BDAT chunk) and reports back through the
 * `…Accepted` / `…Refused` / `message…` methods, each of which returns the reply to send.
 *
 * Shape (OpenSMTPD's check-then-proceed): `receive()` checks syntax and sequence synchronously
 * and either answers at once or names the effect needed. The Session (greeting, HELO name, error
 * count) outlives the Transaction (sender, recipients, body type), which RSET, EHLO, a queued
 * message or a failed one ends.
 *
 * TLS and AUTH: STARTTLS answers 220 and asks the adapter to upgrade (`start-tls`); the adapter
 * reports the handshake with tlsStarted(), which forgets everything the client said before it
 * (RFC 3207 §4.2). AUTH is offered only on a TLS session unless the adapter allows it in plain
 * text (`authWithoutTls`, meant for loopback tests): before TLS it is `538 5.7.11`. An AUTH
 * exchange takes the following lines as base64 responses (authResponse()), not commands; the
 * session decodes PLAIN and LOGIN and names the check (`check-auth`); the adapter verifies and
 * calls authSucceeded() or authFailed(). Passwords never appear in a reply.
 *
 * Trust: line framing is done (protocol/line-reader); this module trusts its ParseResult only.
 */
import type { BodyType, Command, Mailbox, MailParams, RcptParams, Reply, ReversePath } from './types.js';
import type { ParseResult } from './command.js';
import type { LineErrorCode } from './line-reader.js';
import { Buffer } from 'node:buffer';
import { reply } from './reply.js';

export interface ServerSessionOptions {
  /** Our name, in the banner and the EHLO reply. */
  readonly hostname: string;
  readonly maxRecipients: number;
  readonly maxMessageSize: number;
  /** Bad commands tolerated; the next one gets 421 and the session ends. */
  readonly maxBadCommands: number;
  /** A certificate is configured: STARTTLS is offered (until the session is TLS). */
  readonly starttls?: boolean;
  /** The session begins in TLS (the implicit-TLS submission listener, RFC 8314). */
  readonly implicitTls?: boolean;
  /** AUTH PLAIN and LOGIN are offered (a user file is configured). */
  readonly auth?: boolean;
  /** AUTH may be used without TLS (only ever true for a loopback client, by setting). */
  readonly authWithoutTls?: boolean;
}

/** What an AUTH exchange produced, for the adapter to verify. */
export interface AuthCredentials {
  readonly mechanism: 'PLAIN' | 'LOGIN';
  /** The authorization identity (PLAIN only); '' when the client named none. */
  readonly authzid: string;
  readonly username: string;
  readonly password: string;
}

export interface AcceptedRecipient {
  readonly mailbox: Mailbox;
  readonly params: RcptParams;
}

/** The envelope of the current transaction, complete once DATA or the first BDAT is accepted. */
export interface TransactionEnvelope {
  readonly sender: ReversePath;
  readonly params: MailParams;
  readonly body: BodyType;
  readonly recipients: readonly AcceptedRecipient[];
}

export type Decision =
  /** Send this reply; if `close`, end the connection after it. */
  | { readonly kind: 'reply'; readonly reply: Reply; readonly close?: boolean }
  /** Run the sender policy, then call mailAccepted() or mailRefused(). */
  | { readonly kind: 'check-mail'; readonly from: ReversePath; readonly params: MailParams }
  /** Run the recipient policy (relay access), then call rcptAccepted() or rcptRefused(). */
  | { readonly kind: 'check-rcpt'; readonly to: Mailbox; readonly params: RcptParams }
  /**
   * Send `reply` (220), drop every byte that arrived after the STARTTLS line (CVE-2011-0411:
   * plain-text bytes must never be read as commands of the TLS session), do the TLS handshake,
   * then call tlsStarted(); on a failed handshake, close.
   */
  | { readonly kind: 'start-tls'; readonly reply: Reply }
  /** Verify the credentials, then call authSucceeded() or authFailed(). */
  | { readonly kind: 'check-auth'; readonly credentials: AuthCredentials }
  /** Open a message, send `reply` (354), and decode DATA until end-of-data. */
  | { readonly kind: 'start-data'; readonly reply: Reply; readonly envelope: TransactionEnvelope }
  /**
   * Read exactly `size` octets of BDAT chunk. `accept` false: discard them, then send `reply`
   * (RFC 3030 §2: a refused chunk is still consumed, or its bytes would be read as commands).
   * `accept` true: store them; `open` says this is the transaction's first chunk.
   */
  | {
      readonly kind: 'bdat';
      readonly size: number;
      readonly last: boolean;
      readonly accept: boolean;
      readonly open: boolean;
      readonly envelope?: TransactionEnvelope;
      readonly reply?: Reply;
    };

interface Transaction {
  readonly sender: ReversePath;
  readonly params: MailParams;
  readonly recipients: AcceptedRecipient[];
  /** RCPT commands seen, accepted or not: DATA with none accepted is 554, not 503 (RFC 2920 §3.1). */
  rcptAttempts: number;
  mode: 'envelope' | 'bdat' | 'data';
  /** A BDAT chunk of this transaction failed: later chunks are consumed and refused. */
  bdatFailed: boolean;
  bdatOctets: number;
}

const EXTENSIONS_FIXED = ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'BINARYMIME', 'DSN', 'HELP'];
const AUTH_MECHANISMS = ['PLAIN', 'LOGIN'] as const;
/** RFC 4954 §4: a response that is `*` cancels the exchange. */
const AUTH_CANCELLED = reply(501, '5.7.0', 'Authentication cancelled');
const AUTH_BAD_BASE64 = reply(501, '5.5.2', 'Cannot decode the response: not base64');
/** The LOGIN mechanism's (non-standard, universally expected) prompts. */
const LOGIN_USERNAME = Buffer.from('Username:').toString('base64');
const LOGIN_PASSWORD = Buffer.from('Password:').toString('base64');
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** An AUTH exchange in progress: which response comes next. */
type AuthExchange =
  | { readonly mechanism: 'PLAIN' }
  | { readonly mechanism: 'LOGIN'; readonly username?: string };

const HELP_TEXT = [
  'Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP',
  'Postwire relays mail from authorised networks; see its documentation.',
];

export class ServerSession {
  private helo: string | undefined;
  private esmtp = false;
  private badCommands = 0;
  private tx: Transaction | undefined;
  private tls: boolean;
  private authenticated: string | undefined;
  private exchange: AuthExchange | undefined;

  constructor(private readonly options: ServerSessionOptions) {
    this.tls = options.implicitTls === true;
  }

  greeting(): Reply {
    return reply(220, undefined, `${this.options.hostname} ESMTP Postwire`);
  }

  /** The HELO/EHLO name, for the Received: header ('' before any). */
  get heloName(): string {
    return this.helo ?? '';
  }

  /**
   * RFC 3848 / RFC 6531 protocol name for the Received: header's `with` clause: ESMTP, with `S`
   * for TLS and `A` for AUTH (ESMTPS, ESMTPA, ESMTPSA), or the UTF8SMTP forms.
   */
  get protocolName(): string {
    if (!this.esmtp) return 'SMTP';
    const base = this.tx?.params.smtputf8 ? 'UTF8SMTP' : 'ESMTP';
    return `${base}${this.tls ? 'S' : ''}${this.authenticated !== undefined ? 'A' : ''}`;
  }

  /** The session runs over TLS (after STARTTLS, or from the start on the submission port). */
  get secure(): boolean {
    return this.tls;
  }

  /** The authenticated user (RFC 4954), once AUTH succeeded. */
  get user(): string | undefined {
    return this.authenticated;
  }

  /** An AUTH exchange waits for the client's next response line (not a command). */
  get inAuthExchange(): boolean {
    return this.exchange !== undefined;
  }

  /**
   * The TLS handshake after STARTTLS succeeded: RFC 3207 §4.2, the server discards any knowledge
   * obtained from the client (the HELO name, an AUTH identity, the transaction) and the client
   * starts again with EHLO.
   */
  tlsStarted(): void {
    this.tls = true;
    this.helo = undefined;
    this.esmtp = false;
    this.tx = undefined;
    this.authenticated = undefined;
    this.exchange = undefined;
  }

  get inTransaction(): boolean {
    return this.tx !== undefined;
  }

  /** A framing error from the line reader: refuse the line, count it. */
  lineError(code: LineErrorCode): Decision {
    // A malformed line ends an AUTH exchange: the next line is a command again.
    this.exchange = undefined;
    const text: Record<LineErrorCode, string> = {
      LINE_TOO_LONG: 'Line too long',
      BARE_LF: 'Bare <LF> received; lines must end with <CR><LF>',
      BARE_CR: 'Bare <CR> received; lines must end with <CR><LF>',
      NUL: 'NUL character in command',
    };
    return this.bad(reply(500, '5.5.2', text[code]));
  }

  receive(parsed: ParseResult): Decision {
    if (!parsed.ok && parsed.verb === 'BDAT') {
      // The chunk's size is unknown, so its bytes cannot be skipped: reading on would take
      // message content as commands (injection). Refuse and close, as for a framing fault.
      this.badCommands++;
      return { kind: 'reply', reply: { ...parsed.reply, lines: [...parsed.reply.lines, 'Closing: the chunk size is unknown'] }, close: true };
    }
    if (!parsed.ok) return this.bad(parsed.reply);
    return this.dispatch(parsed.command);
  }

  private dispatch(command: Command): Decision {
    switch (command.verb) {
      case 'EHLO':
      case 'HELO':
        return this.hello(command.verb, command.domain);
      case 'MAIL':
        return this.mail(command.from, command.params);
      case 'RCPT':
        return this.rcpt(command.to, command.params);
      case 'DATA':
        return this.data();
      case 'BDAT':
        return this.bdat(command.size, command.last);
      case 'RSET':
        this.tx = undefined;
        return ok(reply(250, '2.0.0', 'Ok'));
      case 'NOOP':
        return ok(reply(250, '2.0.0', 'Ok'));
      case 'QUIT':
        this.tx = undefined;
        return { kind: 'reply', reply: reply(221, '2.0.0', 'Bye'), close: true };
      case 'VRFY':
        return ok(reply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery'));
      case 'EXPN':
        return this.bad(reply(502, '5.5.1', 'EXPN is not available'));
      case 'HELP':
        return ok(reply(214, '2.0.0', ...HELP_TEXT));
      case 'STARTTLS':
        return this.startTls();
      case 'AUTH':
        return this.auth(command.mechanism, command.initialResponse);
    }
  }

  private startTls(): Decision {
    if (!this.options.starttls && !this.tls) return this.bad(reply(502, '5.5.1', 'STARTTLS is not available'));
    if (this.tls) return this.bad(reply(503, '5.5.1', 'TLS is already active'));
    if (this.tx) return this.bad(reply(503, '5.5.1', 'STARTTLS is not allowed during a mail transaction'));
    return { kind: 'start-tls', reply: reply(220, '2.0.0', 'Ready to start TLS') };
  }

  private get authOffered(): boolean {
    return this.options.auth === true && (this.tls || this.options.authWithoutTls === true);
  }

  private auth(mechanism: string, initialResponse: string | undefined): Decision {
    if (!this.options.auth) return this.bad(reply(502, '5.5.1', 'AUTH is not available'));
    if (!this.esmtp) return this.bad(reply(503, '5.5.1', 'Send EHLO first'));
    if (this.authenticated !== undefined) return this.bad(reply(503, '5.5.1', 'Already authenticated'));
    if (this.tx) return this.bad(reply(503, '5.5.1', 'AUTH is not allowed during a mail transaction'));
    if (!this.authOffered) return this.bad(reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'));
    if (mechanism === 'PLAIN') {
      this.exchange = { mechanism: 'PLAIN' };
      return initialResponse === undefined ? ok(reply(334, undefined, '')) : this.authResponse(initialResponse);
    }
    if (mechanism === 'LOGIN') {
      this.exchange = { mechanism: 'LOGIN' };
      return initialResponse === undefined ? ok(reply(334, undefined, LOGIN_USERNAME)) : this.authResponse(initialResponse);
    }
    return this.bad(reply(504, '5.5.4', 'Unrecognized authentication type'));
  }

  /** One response line of the AUTH exchange (the text of the line, or an initial response). */
  authResponse(line: string): Decision {
    const exchange = this.exchange;
    if (exchange === undefined) return this.bad(reply(503, '5.5.1', 'No AUTH exchange in progress'));
    if (line === '*') {
      this.exchange = undefined;
      return this.bad(AUTH_CANCELLED);
    }
    const decoded = decodeResponse(line);
    if (decoded === undefined) {
      this.exchange = undefined;
      return this.bad(AUTH_BAD_BASE64);
    }
    if (exchange.mechanism === 'LOGIN' && exchange.username === undefined) {
      this.exchange = { mechanism: 'LOGIN', username: decoded };
      return ok(reply(334, undefined, LOGIN_PASSWORD));
    }
    this.exchange = undefined;
    if (exchange.mechanism === 'LOGIN') {
      return { kind: 'check-auth', credentials: { mechanism: 'LOGIN', authzid: '', username: exchange.username ?? '', password: decoded } };
    }
    // RFC 4616: [authzid] NUL authcid NUL passwd
    const parts = decoded.split('\0');
    if (parts.length !== 3 || parts[1] === '' || parts[2] === '') {
      return this.bad(reply(501, '5.5.2', 'PLAIN response must be [authzid] NUL authcid NUL passwd'));
    }
    const [authzid = '', username = '', password = ''] = parts;
    return { kind: 'check-auth', credentials: { mechanism: 'PLAIN', authzid, username, password } };
  }

  authSucceeded(user: string): Reply {
    this.authenticated = user;
    return reply(235, '2.7.0', 'Authentication successful');
  }

  /** 535 5.7.8 (wrong credentials) or 454 4.7.0 (throttled, or verification unavailable). */
  authFailed(failure: Reply): Reply {
    return this.countIfError(failure);
  }

  private hello(verb: 'EHLO' | 'HELO', domain: string): Decision {
    this.helo = domain;
    this.esmtp = verb === 'EHLO';
    this.tx = undefined;
    if (verb === 'HELO') return ok(reply(250, undefined, this.options.hostname));
    const extensions = [`SIZE ${this.options.maxMessageSize}`, ...EXTENSIONS_FIXED];
    if (this.options.starttls && !this.tls) extensions.push('STARTTLS');
    if (this.authOffered && this.authenticated === undefined) extensions.push(`AUTH ${AUTH_MECHANISMS.join(' ')}`);
    // RFC 8689 §2: offered only on a TLS session.
    if (this.tls) extensions.push('REQUIRETLS');
    return ok(reply(250, undefined, this.options.hostname, ...extensions));
  }

  private mail(from: ReversePath, params: MailParams): Decision {
    if (this.helo === undefined) return this.bad(reply(503, '5.5.1', 'Send HELO or EHLO first'));
    if (this.tx) return this.bad(reply(503, '5.5.1', 'Nested MAIL command'));
    if (!this.esmtp && Object.keys(params).length > 0) {
      return this.bad(reply(555, '5.5.4', 'MAIL parameters need EHLO'));
    }
    if (params.size !== undefined && params.size > this.options.maxMessageSize) {
      return this.bad(reply(552, '5.3.4', 'Message size exceeds fixed maximum message size'));
    }
    if (from?.utf8 && !params.smtputf8) {
      return this.bad(reply(553, '5.6.7', 'Non-ASCII sender address needs the SMTPUTF8 parameter'));
    }
    if (params.requireTls && !this.tls) {
      // Not offered in plain text: 530 "STARTTLS first" (RFC 3207) with 5.7.10 "encryption needed".
      return this.bad(reply(530, '5.7.10', 'REQUIRETLS needs a TLS session: issue STARTTLS first'));
    }
    return { kind: 'check-mail', from, params };
  }

  mailAccepted(from: ReversePath, params: MailParams): Reply {
    this.tx = { sender: from, params, recipients: [], rcptAttempts: 0, mode: 'envelope', bdatFailed: false, bdatOctets: 0 };
    return reply(250, '2.1.0', 'Ok');
  }

  mailRefused(refusal: Reply): Reply {
    return this.countIfError(refusal);
  }

  private rcpt(to: Mailbox, params: RcptParams): Decision {
    const tx = this.tx;
    if (!tx || tx.mode !== 'envelope') return this.bad(reply(503, '5.5.1', 'Need MAIL command'));
    tx.rcptAttempts++;
    if (!this.esmtp && Object.keys(params).length > 0) {
      return this.bad(reply(555, '5.5.4', 'RCPT parameters need EHLO'));
    }
    if (tx.recipients.length >= this.options.maxRecipients) {
      // 452, not 552: RFC 5321 §4.5.3.1.10; the client sends the rest in a later transaction.
      return ok(reply(452, '4.5.3', 'Too many recipients'));
    }
    if (to.utf8 && !tx.params.smtputf8) {
      return this.bad(reply(553, '5.6.7', 'Non-ASCII recipient address needs SMTPUTF8 on MAIL'));
    }
    return { kind: 'check-rcpt', to, params };
  }

  rcptAccepted(to: Mailbox, params: RcptParams): Reply {
    const tx = this.tx;
    if (!tx) return reply(503, '5.5.1', 'Need MAIL command');
    tx.recipients.push({ mailbox: to, params });
    return reply(250, '2.1.5', 'Ok');
  }

  rcptRefused(refusal: Reply): Reply {
    return this.countIfError(refusal);
  }

  private data(): Decision {
    const tx = this.tx;
    if (!tx || tx.mode === 'data') return this.bad(reply(503, '5.5.1', 'Need MAIL command'));
    if (tx.mode === 'bdat') return this.bad(reply(503, '5.5.1', 'DATA is not allowed after BDAT'));
    if (tx.recipients.length === 0) {
      return tx.rcptAttempts > 0
        ? this.bad(reply(554, '5.5.1', 'No valid recipients'))
        : this.bad(reply(503, '5.5.1', 'Need RCPT command'));
    }
    if (this.envelopeOf(tx).body === 'BINARYMIME') {
      return this.bad(reply(503, '5.5.1', 'BODY=BINARYMIME needs BDAT, not DATA'));
    }
    tx.mode = 'data';
    return {
      kind: 'start-data',
      reply: reply(354, undefined, 'End data with <CR><LF>.<CR><LF>'),
      envelope: this.envelopeOf(tx),
    };
  }

  private bdat(size: number, last: boolean): Decision {
    const tx = this.tx;
    // A refused chunk is still consumed; its reply counts like any other error (and may be 421).
    const refuse = (r: Reply): Decision => ({ kind: 'bdat', size, last, accept: false, open: false, reply: this.countIfError(r) });
    if (!this.esmtp) return refuse(reply(503, '5.5.1', 'BDAT needs EHLO'));
    if (!tx || tx.mode === 'data') return refuse(reply(503, '5.5.1', 'Need MAIL command'));
    if (tx.recipients.length === 0) {
      return refuse(tx.rcptAttempts > 0 ? reply(554, '5.5.1', 'No valid recipients') : reply(503, '5.5.1', 'Need RCPT command'));
    }
    if (tx.bdatFailed) {
      if (last) this.tx = undefined;
      return refuse(reply(503, '5.5.1', 'An earlier BDAT chunk of this message failed; send RSET'));
    }
    const open = tx.mode === 'envelope';
    tx.mode = 'bdat';
    return { kind: 'bdat', size, last, accept: true, open, envelope: this.envelopeOf(tx) };
  }

  /** A BDAT chunk that is not the last was stored. */
  chunkStored(size: number): Reply {
    if (this.tx) this.tx.bdatOctets += size;
    return reply(250, '2.0.0', `${size} octets received`);
  }

  /** A BDAT chunk failed (size limit, store error): refuse it and every later chunk. */
  chunkFailed(failure: Reply, last: boolean): Reply {
    if (this.tx) this.tx.bdatFailed = true;
    if (last) this.tx = undefined;
    return this.countIfError(failure);
  }

  /** The message is durable in the queue: the only place a 250 for a message is made. */
  messageQueued(queueId: string): Reply {
    this.tx = undefined;
    return reply(250, '2.0.0', `Ok: queued as ${queueId}`);
  }

  /** The message was not queued (too big, refused by policy, store failure). */
  messageFailed(failure: Reply): Reply {
    this.tx = undefined;
    return failure;
  }

  /** Replies counted as client errors end the session once there are too many. */
  private bad(r: Reply): Decision {
    const counted = this.countIfError(r);
    if (counted.code === 421) return { kind: 'reply', reply: counted, close: true };
    return { kind: 'reply', reply: counted };
  }

  private countIfError(r: Reply): Reply {
    if (r.code < 500) return r;
    this.badCommands++;
    if (this.badCommands > this.options.maxBadCommands) {
      return reply(421, '4.7.0', `${this.options.hostname} Error: too many errors`);
    }
    return r;
  }

  /** Has the last counted error pushed the session over its limit? */
  get exhausted(): boolean {
    return this.badCommands > this.options.maxBadCommands;
  }

  private envelopeOf(tx: Transaction): TransactionEnvelope {
    return { sender: tx.sender, params: tx.params, body: tx.params.body ?? '7BIT', recipients: tx.recipients };
  }
}

function ok(r: Reply): Decision {
  return { kind: 'reply', reply: r };
}

/** A base64 response as UTF-8 text (`=` is the empty initial response); undefined when malformed. */
function decodeResponse(line: string): string | undefined {
  if (line === '=') return '';
  if (!BASE64.test(line)) return undefined;
  try {
    return utf8.decode(Buffer.from(line, 'base64'));
  } catch {
    return undefined;
  }
}
