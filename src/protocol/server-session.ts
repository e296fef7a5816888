/**
 * @module protocol/server-session
 * The inbound SMTP state machine, pure: parsed commands in, decisions out. It knows the RFC 5321
 * command order, the ESMTP extensions Postwire offers (RFC 1870, 2920, 3030, 3461, 6152, 6531,
 * 2034) and the limits it was given; it never touches a socket, a file or a clock.
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
 * Trust: line framing is done (protocol/line-reader); this module trusts its ParseResult only.
 */
import type { BodyType, Command, Mailbox, MailParams, RcptParams, Reply, ReversePath } from './types.js';
import type { ParseResult } from './command.js';
import type { LineErrorCode } from './line-reader.js';
import { reply } from './reply.js';

export interface ServerSessionOptions {
  /** Our name, in the banner and the EHLO reply. */
  readonly hostname: string;
  readonly maxRecipients: number;
  readonly maxMessageSize: number;
  /** Bad commands tolerated; the next one gets 421 and the session ends. */
  readonly maxBadCommands: number;
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

const HELP_TEXT = [
  'Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP',
  'Postwire relays mail from authorised networks; see its documentation.',
];

export class ServerSession {
  private helo: string | undefined;
  private esmtp = false;
  private badCommands = 0;
  private tx: Transaction | undefined;

  constructor(private readonly options: ServerSessionOptions) {}

  greeting(): Reply {
    return reply(220, undefined, `${this.options.hostname} ESMTP Postwire`);
  }

  /** The HELO/EHLO name, for the Received: header ('' before any). */
  get heloName(): string {
    return this.helo ?? '';
  }

  /** RFC 3848 / RFC 6531 protocol name for the Received: header's `with` clause. */
  get protocolName(): string {
    if (!this.esmtp) return 'SMTP';
    return this.tx?.params.smtputf8 ? 'UTF8SMTP' : 'ESMTP';
  }

  get inTransaction(): boolean {
    return this.tx !== undefined;
  }

  /** A framing error from the line reader: refuse the line, count it. */
  lineError(code: LineErrorCode): Decision {
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
        return this.bad(reply(502, '5.5.1', 'STARTTLS is not available'));
      case 'AUTH':
        return this.bad(reply(502, '5.5.1', 'AUTH is not available'));
    }
  }

  private hello(verb: 'EHLO' | 'HELO', domain: string): Decision {
    this.helo = domain;
    this.esmtp = verb === 'EHLO';
    this.tx = undefined;
    if (verb === 'HELO') return ok(reply(250, undefined, this.options.hostname));
    return ok(reply(250, undefined, this.options.hostname, `SIZE ${this.options.maxMessageSize}`, ...EXTENSIONS_FIXED));
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
