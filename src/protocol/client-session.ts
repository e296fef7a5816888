/**
 * @module protocol/client-session
 * The outbound SMTP client state machine, pure: replies in, bytes to write and facts out. It
 * greets (EHLO, HELO when EHLO gets 5xx), reads the peer's extensions, refuses locally what the
 * peer cannot take (SIZE, SMTPUTF8, BINARYMIME), pipelines MAIL/RCPT/DATA when the peer offers
 * PIPELINING (RFC 2920), drives DATA or BDAT (RFC 3030), and records for every recipient the one
 * fact that decided it. It never touches a socket, a timer or a clock.
 *
 * Who calls it: delivery/connection feeds it Replies (from a ReplyReader), writes what it returns,
 * arms a timer from CLIENT_STEPS[session.awaiting], and hands each `transaction` event's facts to
 * delivery/outcome, the only place a fact becomes delivered/deferred/bounced/ambiguous/held.
 *
 * Failure behaviour: peer misbehaviour is data, never an exception: a reply when none is
 * outstanding (a 250 before our end-of-data, more replies than commands, a 250 to DATA) is a
 * `framing-fault` event, the transaction's open recipients get a framing-fault fact and the
 * machine closes: the stream can no longer be trusted (issue 3 item 6, the founding bug).
 * Driving it out of order (send() while busy, dataChunk() outside a body) is a caller bug and
 * throws ProtocolError CLIENT_MISUSE; a recipient-less message throws RangeError.
 *
 * Trust: replies are framed and syntactically valid (ReplyReader); nothing else about them is.
 */
import { Buffer } from 'node:buffer';
import { formatCommand } from './command.js';
import { bdatCommand } from './dot.js';
import { DotEncoder } from './dot-simd.js';
import { ProtocolError } from './reply.js';
import type { BodyType, DsnRet, Mailbox, MailParams, RcptParams, Reply, ReversePath } from './types.js';

const MINUTE = 60_000;

/** What every protocol step of the client is called, as CLIENT_STEPS keys. */
export type ClientStepName =
  | 'connect'
  | 'banner'
  | 'ehlo'
  | 'helo'
  | 'mail'
  | 'rcpt'
  | 'data-init'
  | 'data-block'
  | 'data-end'
  | 'bdat'
  | 'bdat-last'
  | 'rset'
  | 'quit';

export interface ClientStep {
  /** How long to wait for the peer in this step before giving up (the caller's timer). */
  readonly timeoutMs: number;
  /** For logs and synthetic replies: "<lost connection|timed out> while <phrase>". */
  readonly phrase: string;
  /** Where the timeout comes from. */
  readonly source: string;
}

/**
 * Every step, its timeout and its log phrase, in one table (Postfix smtp_proto.c xfer_timeouts[]
 * and xfer_states[]; RFC 5321 §4.5.3.2). `awaiting` always names one of these.
 *
 * Ordering invariants the machine keeps (tested in client-session.test.ts):
 *  1. Replies match commands strictly first-in first-out. A reply with nothing outstanding is a
 *     framing fault, except an unsolicited 421 (RFC 5321 §3.8: the server may announce its
 *     shutdown at any time), which ends the connection.
 *  2. EHLO/HELO, RSET and QUIT are written alone; in a pipelined group MAIL comes first and DATA,
 *     if present, last (RFC 2920 §3.1). BDAT chunks are never in the MAIL/RCPT group.
 *  3. Body bytes are wanted only after 354 (DATA), or after every RCPT reply is in and at least
 *     one recipient was accepted (BDAT).
 *  4. The end-of-data terminator and BDAT LAST are issued by this machine, once per transaction.
 *     From then until their reply the connection is in the ambiguous window (RFC 1047).
 *  5. Every recipient of a transaction gets exactly one fact, once; no transaction starts while
 *     a reply is outstanding; after 421 or a framing fault nothing more is written.
 */
export const CLIENT_STEPS = {
  connect: { timeoutMs: 30_000, phrase: 'connecting', source: 'Postfix smtp_connect_timeout (not in RFC 5321); the caller’s socket step' },
  banner: { timeoutMs: 5 * MINUTE, phrase: 'waiting for the greeting', source: 'RFC 5321 §4.5.3.2.1 initial 220 message' },
  ehlo: { timeoutMs: 5 * MINUTE, phrase: 'sending EHLO', source: 'Postfix smtp_helo_timeout (RFC 5321 gives none)' },
  helo: { timeoutMs: 5 * MINUTE, phrase: 'sending HELO', source: 'Postfix smtp_helo_timeout (RFC 5321 gives none)' },
  mail: { timeoutMs: 5 * MINUTE, phrase: 'sending MAIL FROM', source: 'RFC 5321 §4.5.3.2.2 MAIL command' },
  rcpt: { timeoutMs: 5 * MINUTE, phrase: 'sending RCPT TO', source: 'RFC 5321 §4.5.3.2.3 RCPT command' },
  'data-init': { timeoutMs: 2 * MINUTE, phrase: 'waiting for 354 after DATA', source: 'RFC 5321 §4.5.3.2.4 DATA initiation' },
  'data-block': { timeoutMs: 3 * MINUTE, phrase: 'sending the message body', source: 'RFC 5321 §4.5.3.2.5 data block (per write)' },
  'data-end': {
    timeoutMs: 10 * MINUTE,
    phrase: 'waiting for the reply to end-of-data -- message may be sent more than once',
    source: 'RFC 5321 §4.5.3.2.6 DATA termination',
  },
  bdat: { timeoutMs: 10 * MINUTE, phrase: 'waiting for the reply to a BDAT chunk', source: 'RFC 3030 gives none; as DATA termination, the peer may scan each chunk' },
  'bdat-last': {
    timeoutMs: 10 * MINUTE,
    phrase: 'waiting for the reply to BDAT LAST -- message may be sent more than once',
    source: 'RFC 5321 §4.5.3.2.6 DATA termination, applied to the last chunk',
  },
  rset: { timeoutMs: 5 * MINUTE, phrase: 'sending RSET', source: 'Postfix smtp_rset_timeout' },
  quit: { timeoutMs: 5 * MINUTE, phrase: 'sending QUIT', source: 'Postfix smtp_quit_timeout' },
} as const satisfies Record<ClientStepName, ClientStep>;

/** What the peer offers, from its EHLO reply (all false after a HELO fallback). */
export interface Capabilities {
  readonly esmtp: boolean;
  /** The first line of the EHLO/HELO reply: the peer's name and greeting text. */
  readonly greeting: string;
  readonly pipelining: boolean;
  /** SIZE was announced (so MAIL may carry SIZE=). */
  readonly size: boolean;
  /** The announced maximum in octets; absent for `SIZE` or `SIZE 0` (no fixed limit, RFC 1870). */
  readonly sizeLimit?: number;
  readonly eightBitMime: boolean;
  readonly smtputf8: boolean;
  readonly chunking: boolean;
  readonly binaryMime: boolean;
  readonly dsn: boolean;
  readonly starttls: boolean;
  readonly enhancedStatusCodes: boolean;
  /** AUTH mechanisms, upper case (`AUTH PLAIN LOGIN` and the old `AUTH=PLAIN` form). */
  readonly auth: readonly string[];
  /** Every keyword as announced, upper-cased, with its parameters. */
  readonly keywords: ReadonlyMap<string, readonly string[]>;
}

export const NO_EXTENSIONS: Capabilities = Object.freeze({
  esmtp: false,
  greeting: '',
  pipelining: false,
  size: false,
  eightBitMime: false,
  smtputf8: false,
  chunking: false,
  binaryMime: false,
  dsn: false,
  starttls: false,
  enhancedStatusCodes: false,
  auth: [],
  keywords: new Map<string, readonly string[]>(),
});

/** Reads the extension lines of a 250 EHLO reply (RFC 5321 §4.1.1.1 ehlo-line). */
export function parseEhlo(r: Reply): Capabilities {
  const [greeting = '', ...lines] = r.lines;
  const keywords = new Map<string, readonly string[]>();
  for (const line of lines) {
    const words = line.trim().split(/[ =]+/).filter((w) => w !== '');
    const [keyword, ...params] = words;
    if (keyword === undefined || !/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(keyword)) continue;
    const key = keyword.toUpperCase();
    keywords.set(key, [...(keywords.get(key) ?? []), ...params]);
  }
  const has = (k: string): boolean => keywords.has(k);
  const sizeParam = keywords.get('SIZE')?.[0];
  const limit = sizeParam !== undefined && /^\d{1,20}$/.test(sizeParam) ? Number(sizeParam) : 0;
  const caps: Capabilities = {
    esmtp: true,
    greeting,
    pipelining: has('PIPELINING'),
    size: has('SIZE'),
    eightBitMime: has('8BITMIME'),
    smtputf8: has('SMTPUTF8'),
    chunking: has('CHUNKING'),
    binaryMime: has('BINARYMIME'),
    dsn: has('DSN'),
    starttls: has('STARTTLS'),
    enhancedStatusCodes: has('ENHANCEDSTATUSCODES'),
    auth: (keywords.get('AUTH') ?? []).map((m) => m.toUpperCase()),
    keywords,
  };
  return limit > 0 && Number.isSafeInteger(limit) ? { ...caps, sizeLimit: limit } : caps;
}

export interface OutboundRecipient {
  readonly mailbox: Mailbox;
  /** NOTIFY / ORCPT; sent only when the peer offers DSN. */
  readonly params?: RcptParams;
}

/** One message for one transaction: the envelope and what the body needs, not the body. */
export interface OutboundMessage {
  readonly sender: ReversePath;
  readonly recipients: readonly OutboundRecipient[];
  readonly body: BodyType;
  /** The message needs SMTPUTF8 (it came in with it); a UTF-8 address implies it anyway. */
  readonly smtputf8: boolean;
  /** Octets of the message as it will be sent, before dot-stuffing: for SIZE= and the pre-flight. */
  readonly size: number;
  readonly ret?: DsnRet;
  readonly envid?: string;
}

export type PreflightCheck = 'size' | 'smtputf8' | 'binarymime';

/**
 * What decided one recipient, in protocol terms; delivery/outcome says what it means.
 *  reply        the peer's reply at `step` (RCPT refusal, MAIL/DATA refusal, the final reply, 421…)
 *  interrupted  no reply: the connection was lost or a timer fired while in `step`; `ambiguous`
 *               when the terminator or BDAT LAST was written and its reply never came (RFC 1047)
 *  framing-fault the peer's replies stopped matching our commands (or the caller's byte count did)
 *  preflight    refused locally before MAIL: the peer cannot take this message
 */
export type AttemptFact =
  | { readonly kind: 'reply'; readonly step: ClientStepName; readonly reply: Reply }
  | {
      readonly kind: 'interrupted';
      readonly step: ClientStepName;
      readonly cause: 'connection-lost' | 'timeout';
      readonly ambiguous: boolean;
      readonly detail?: string;
    }
  | { readonly kind: 'framing-fault'; readonly step: ClientStepName; readonly reason: string }
  | { readonly kind: 'preflight'; readonly check: PreflightCheck; readonly detail: string };

export type ClientEvent =
  /** Write these bytes now, in event order (several pipelined commands may share one write). */
  | { readonly kind: 'write'; readonly data: string }
  /** Idle: send(), rset() or quit() may be called. */
  | { readonly kind: 'ready'; readonly capabilities: Capabilities }
  /** Greeting, EHLO or HELO failed: this connection carries no mail (the fact covers all). */
  | { readonly kind: 'session-failed'; readonly fact: AttemptFact }
  /** Stream the body now: `data` through dataChunk()/dataEnd(), `bdat` through bdatChunk(). */
  | { readonly kind: 'send-body'; readonly mode: 'data' | 'bdat' }
  /** A BDAT chunk was refused: start no further chunk (those already started are awaited). */
  | { readonly kind: 'stop-body' }
  /** The transaction is decided: `facts[i]` is message.recipients[i]'s one fact. */
  | { readonly kind: 'transaction'; readonly facts: readonly AttemptFact[] }
  /** The peer's replies do not match our commands; a `close` follows. */
  | { readonly kind: 'framing-fault'; readonly reason: string }
  /** Close the connection now; nothing more will be written. */
  | { readonly kind: 'close'; readonly reason: string };

export interface ClientSessionOptions {
  /** Our name for EHLO/HELO. */
  readonly hostname: string;
  /** Pipeline when the peer offers PIPELINING (default true). */
  readonly pipelining?: boolean;
  /** Use BDAT when the peer offers CHUNKING (default true). BINARYMIME always needs it. */
  readonly chunking?: boolean;
}

/** One reply we are waiting for. `discard`: the '.' sent alone after a needless 354. */
type Expect =
  | { readonly step: 'banner' | 'ehlo' | 'helo' | 'mail' | 'data-init' | 'bdat' | 'bdat-last' | 'rset' | 'quit' }
  | { readonly step: 'rcpt'; readonly index: number }
  | { readonly step: 'data-end'; readonly discard: boolean };

interface Transaction {
  readonly message: OutboundMessage;
  readonly facts: (AttemptFact | undefined)[];
  readonly mode: 'data' | 'bdat';
  readonly pipelined: boolean;
  /** RCPT commands still to write (non-pipelined peers get one at a time). */
  nextRcpt: number;
  rcptReplies: number;
  accepted: number;
  mailRefused: boolean;
  /** The peer may hold transaction state (MAIL accepted, no final reply yet): RSET before reuse. */
  serverOpen: boolean;
  body: 'none' | 'sending' | 'stopped' | 'ended';
  encoder: DotEncoder | undefined;
  /** The terminator / BDAT LAST was issued; its reply has not come. */
  finalSent: boolean;
  /** The facts went out in a `transaction` event. */
  reported: boolean;
  octets: number;
}

/** The command a reply answers, for fault reasons. */
const STEP_COMMAND: Readonly<Record<Expect['step'], string>> = {
  banner: 'the connection (greeting)',
  ehlo: 'EHLO',
  helo: 'HELO',
  mail: 'MAIL',
  rcpt: 'RCPT',
  'data-init': 'DATA',
  'data-end': 'end-of-data',
  bdat: 'BDAT',
  'bdat-last': 'BDAT LAST',
  rset: 'RSET',
  quit: 'QUIT',
};

type Phase = 'greeting' | 'hello' | 'ready' | 'busy' | 'quitting' | 'closed';

function misuse(what: string): ProtocolError {
  return new ProtocolError('CLIENT_MISUSE', what);
}

const positive = (r: Reply): boolean => r.code >= 200 && r.code < 300;

export class ClientSession {
  private phase: Phase = 'greeting';
  private readonly fifo: Expect[] = [{ step: 'banner' }];
  private caps: Capabilities = NO_EXTENSIONS;
  private tx: Transaction | undefined;
  private readonly options: Required<ClientSessionOptions>;

  constructor(options: ClientSessionOptions) {
    this.options = { pipelining: true, chunking: true, ...options };
  }

  get capabilities(): Capabilities {
    return this.caps;
  }

  /** The step whose timer should run now (CLIENT_STEPS key), or undefined when idle/closed. */
  get awaiting(): ClientStepName | undefined {
    if (this.phase === 'closed') return undefined;
    const head = this.fifo[0];
    if (head) return head.step;
    return this.tx?.body === 'sending' ? 'data-block' : undefined;
  }

  /** A reply-less connection loss now would leave the outcome unknown (RFC 1047). */
  get ambiguous(): boolean {
    return this.phase !== 'closed' && this.tx !== undefined && this.tx.finalSent && !this.tx.reported;
  }

  /**
   * The body mode wanted right now; check it after every await before writing a chunk. Without
   * PIPELINING a BDAT chunk waits for the previous chunk's reply (RFC 2920 pipelines only with
   * the peer's consent), so `bdat` turns off after each chunk and a new `send-body` turns it on.
   */
  get sending(): 'data' | 'bdat' | undefined {
    const tx = this.tx;
    if (this.phase !== 'busy' || tx?.body !== 'sending') return undefined;
    return tx.mode === 'data' || tx.pipelined || this.fifo.length === 0 ? tx.mode : undefined;
  }

  /** Body octets of this transaction: given to dataChunk() (before stuffing) or declared by BDAT. */
  get bodyOctets(): number {
    return this.tx?.octets ?? 0;
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  /** One reply from the peer, in arrival order. */
  receive(r: Reply): ClientEvent[] {
    if (this.phase === 'closed') return [];
    const out: ClientEvent[] = [];
    const head = this.fifo.shift();
    if (head === undefined) this.unsolicited(r, out);
    else if (r.code >= 300 && r.code < 400 && head.step !== 'data-init') {
      // 354 (or any 3xx) answers only DATA: elsewhere the peer and we disagree on the state.
      this.framingFault(`the peer answered ${STEP_COMMAND[head.step]} with ${r.code}`, out, head.step);
    } else this.handle(head, r, out);
    this.settle(out);
    return out;
  }

  /** Start a transaction. Either writes commands, or reports pre-flight facts at once. */
  send(message: OutboundMessage): ClientEvent[] {
    if (this.phase !== 'ready') throw misuse(`send() while ${this.phase}`);
    const n = message.recipients.length;
    if (n === 0) throw new RangeError('a transaction needs at least one recipient');
    const out: ClientEvent[] = [];
    const refused = this.preflight(message);
    if (refused !== undefined) {
      out.push({ kind: 'transaction', facts: message.recipients.map(() => refused) }, this.readyEvent());
      return out;
    }
    const mode = this.options.chunking && this.caps.chunking ? 'bdat' : 'data';
    const pipelined = this.options.pipelining && this.caps.pipelining;
    const tx: Transaction = {
      message,
      facts: message.recipients.map(() => undefined),
      mode,
      pipelined,
      nextRcpt: 0,
      rcptReplies: 0,
      accepted: 0,
      mailRefused: false,
      serverOpen: false,
      body: 'none',
      encoder: undefined,
      finalSent: false,
      reported: false,
      octets: 0,
    };
    this.tx = tx;
    this.phase = 'busy';
    let data = formatCommand({ verb: 'MAIL', from: message.sender, params: this.mailParams(message) });
    this.fifo.push({ step: 'mail' });
    if (pipelined) {
      // RFC 2920 §3.1: MAIL, every RCPT and DATA in one group, DATA last. BDAT waits for the
      // RCPT replies: no extra round trip compared to waiting for 354, and no body is sent to a
      // peer that took no recipient.
      while (tx.nextRcpt < n) data += this.rcptCommand(tx);
      if (mode === 'data') {
        data += formatCommand({ verb: 'DATA' });
        this.fifo.push({ step: 'data-init' });
      }
    }
    out.push({ kind: 'write', data });
    return out;
  }

  /** DATA body: one chunk of the message as stored; returns the dot-stuffed bytes to write. */
  dataChunk(chunk: Uint8Array): Buffer[] {
    const tx = this.bodyTx('data');
    tx.octets += chunk.byteLength;
    return (tx.encoder ?? (tx.encoder = new DotEncoder())).push(chunk);
  }

  /** DATA body done: returns the terminator to write now. The ambiguous window opens here. */
  dataEnd(): Buffer {
    const tx = this.bodyTx('data');
    tx.body = 'ended';
    tx.finalSent = true;
    this.fifo.push({ step: 'data-end', discard: false });
    return (tx.encoder ?? new DotEncoder()).end();
  }

  /** BDAT: the command line for a chunk of `size` octets; write it, then exactly those octets. */
  bdatChunk(size: number, last: boolean): string {
    const tx = this.bodyTx('bdat');
    const line = bdatCommand(size, last);
    tx.octets += size;
    this.fifo.push({ step: last ? 'bdat-last' : 'bdat' });
    if (last) {
      tx.body = 'ended';
      tx.finalSent = true;
    }
    return line;
  }

  /** Probe or clean a reused connection before the next message (Postfix smtp_rset). */
  rset(): ClientEvent[] {
    if (this.phase !== 'ready') throw misuse(`rset() while ${this.phase}`);
    this.phase = 'busy';
    this.fifo.push({ step: 'rset' });
    return [{ kind: 'write', data: formatCommand({ verb: 'RSET' }) }];
  }

  /** End the session politely; a `close` event follows the peer's reply. */
  quit(): ClientEvent[] {
    if (this.phase !== 'ready') throw misuse(`quit() while ${this.phase}`);
    return this.startQuit();
  }

  /**
   * The connection ended or a step's timer fired with no reply: the open recipients get an
   * `interrupted` fact (ambiguous inside the RFC 1047 window), then `close`.
   */
  interrupted(cause: 'connection-lost' | 'timeout', detail?: string): ClientEvent[] {
    if (this.phase === 'closed') return [];
    const out: ClientEvent[] = [];
    const step = this.awaiting ?? 'banner';
    const base = { kind: 'interrupted', step, cause, ambiguous: this.ambiguous } as const;
    this.failOpen(detail === undefined ? base : { ...base, detail }, out);
    this.close(out, cause === 'timeout' ? `timed out while ${CLIENT_STEPS[step].phrase}` : `lost connection while ${CLIENT_STEPS[step].phrase}`);
    return out;
  }

  /**
   * The caller found the stream untrustworthy (issue 3 item 6: the body's octet count or hash
   * differs from what was accepted). Same handling as a framing fault seen in the replies.
   */
  fault(reason: string): ClientEvent[] {
    if (this.phase === 'closed') return [];
    const out: ClientEvent[] = [];
    this.framingFault(reason, out);
    return out;
  }

  // ── replies ────────────────────────────────────────────────────────────────────────────

  private handle(head: Expect, r: Reply, out: ClientEvent[]): void {
    switch (head.step) {
      case 'banner':
        if (positive(r)) {
          this.phase = 'hello';
          this.expectWrite('ehlo', formatCommand({ verb: 'EHLO', domain: this.options.hostname }), out);
        } else this.sessionFailed({ kind: 'reply', step: 'banner', reply: r }, out);
        return;
      case 'ehlo':
        if (positive(r)) this.greeted(parseEhlo(r), out);
        else if (r.code >= 500) this.expectWrite('helo', formatCommand({ verb: 'HELO', domain: this.options.hostname }), out);
        else this.sessionFailed({ kind: 'reply', step: 'ehlo', reply: r }, out);
        return;
      case 'helo':
        if (positive(r)) this.greeted({ ...NO_EXTENSIONS, greeting: r.lines[0] ?? '' }, out);
        else this.sessionFailed({ kind: 'reply', step: 'helo', reply: r }, out);
        return;
      case 'mail':
        return this.onMail(r, out);
      case 'rcpt':
        return this.onRcpt(head.index, r, out);
      case 'data-init':
        return this.onDataInit(r, out);
      case 'data-end':
        return this.onFinal('data-end', head.discard, r, out);
      case 'bdat':
        return this.onChunk(r, out);
      case 'bdat-last':
        return this.onFinal('bdat-last', false, r, out);
      case 'rset':
        if (r.code === 421) this.close(out, 'the peer closed the session (421 to RSET)');
        else if (!positive(r)) out.push(...this.startQuit()); // cannot reset: do not reuse (Postfix)
        return;
      case 'quit':
        this.close(out, 'QUIT answered');
        return;
    }
  }

  /** A reply with nothing outstanding: a 421 shutdown notice, or a framing fault. */
  private unsolicited(r: Reply, out: ClientEvent[]): void {
    const tx = this.tx;
    if (r.code === 421) {
      if (tx && !tx.reported) this.decideRest({ kind: 'reply', step: this.awaiting ?? 'data-block', reply: r }, out);
      this.close(out, 'the peer closed the session (421)');
      return;
    }
    const what = `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''} ${r.lines[0] ?? ''}`.trim();
    const reason =
      tx?.body === 'sending'
        ? `the peer replied (${what}) before our end-of-data`
        : `the peer sent a reply (${what}) while no command was outstanding`;
    this.framingFault(reason, out);
  }

  private onMail(r: Reply, out: ClientEvent[]): void {
    const tx = this.currentTx();
    if (positive(r)) {
      tx.serverOpen = true;
      if (!tx.pipelined) this.writeRcpt(tx, out);
      return;
    }
    // Every recipient dies with the MAIL reply; pipelined RCPT/DATA replies that follow are
    // consequences (503 need MAIL), not causes, and are consumed without a say (Postfix).
    tx.mailRefused = true;
    this.decideRest({ kind: 'reply', step: 'mail', reply: r }, out);
    if (r.code === 421) this.close(out, 'the peer closed the session (421 to MAIL)');
  }

  private onRcpt(index: number, r: Reply, out: ClientEvent[]): void {
    const tx = this.currentTx();
    tx.rcptReplies++;
    if (tx.mailRefused) {
      if (r.code === 421) this.close(out, 'the peer closed the session (421 to RCPT)');
      return;
    }
    if (positive(r)) tx.accepted++;
    else tx.facts[index] = { kind: 'reply', step: 'rcpt', reply: r };
    if (r.code === 421) {
      this.decideRest({ kind: 'reply', step: 'rcpt', reply: r }, out);
      this.close(out, 'the peer closed the session (421 to RCPT)');
      return;
    }
    if (tx.rcptReplies < tx.message.recipients.length) {
      if (!tx.pipelined) this.writeRcpt(tx, out);
      return;
    }
    // Every RCPT reply is in.
    if (tx.accepted === 0) {
      this.report(tx, out); // all refused: the facts are complete
      if (!tx.pipelined || tx.mode === 'bdat') this.abortTransaction(out); // RSET instead of DATA
      return; // pipelined DATA: its reply decides between '.' alone and RSET
    }
    if (tx.mode === 'bdat') this.startBody(tx, out);
    else if (!tx.pipelined) this.expectWrite('data-init', formatCommand({ verb: 'DATA' }), out);
  }

  private onDataInit(r: Reply, out: ClientEvent[]): void {
    const tx = this.currentTx();
    if (r.code === 354) {
      if (tx.mailRefused || tx.accepted === 0) {
        // RFC 2920 §3.1: DATA was accepted although no recipient was; send a single dot.
        this.fifo.push({ step: 'data-end', discard: true });
        out.push({ kind: 'write', data: '.\r\n' });
      } else this.startBody(tx, out);
      return;
    }
    if (r.code < 400) {
      // A 250 (or other non-354) to DATA: the peer would read our body as commands.
      this.framingFault(`the peer answered DATA with ${r.code} instead of 354`, out, 'data-init');
      return;
    }
    if (!tx.mailRefused && tx.accepted > 0) this.decideRest({ kind: 'reply', step: 'data-init', reply: r }, out);
    if (r.code === 421) this.close(out, 'the peer closed the session (421 to DATA)');
  }

  private onChunk(r: Reply, out: ClientEvent[]): void {
    const tx = this.currentTx();
    if (positive(r)) {
      if (!tx.pipelined && tx.body === 'sending') out.push({ kind: 'send-body', mode: 'bdat' }); // lock-step: next chunk
      return;
    }
    if (tx.body !== 'stopped' && !tx.reported) {
      this.decideRest({ kind: 'reply', step: 'bdat', reply: r }, out);
      if (tx.body === 'sending') out.push({ kind: 'stop-body' });
    }
    tx.body = 'stopped';
    if (r.code === 421) this.close(out, 'the peer closed the session (421 to BDAT)');
  }

  private onFinal(step: 'data-end' | 'bdat-last', discard: boolean, r: Reply, out: ClientEvent[]): void {
    const tx = this.currentTx();
    if (!discard && tx.body !== 'stopped') this.decideRest({ kind: 'reply', step, reply: r }, out);
    if (tx.body !== 'stopped') tx.serverOpen = false; // end-of-data ends the peer's transaction either way
    tx.finalSent = false;
    if (r.code === 421) this.close(out, `the peer closed the session (421 to ${step === 'data-end' ? 'end-of-data' : 'BDAT LAST'})`);
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────

  /** After each input: a finished transaction with nothing outstanding ends in RSET or ready. */
  private settle(out: ClientEvent[]): void {
    if (this.phase !== 'busy' || this.fifo.length > 0) return;
    const tx = this.tx;
    // Undecided with nothing outstanding: the caller owes us the body (send-body was emitted).
    if (tx && !tx.reported) return;
    if (tx && (tx.serverOpen || tx.body === 'stopped')) {
      this.abortTransaction(out);
      return;
    }
    this.tx = undefined;
    this.phase = 'ready';
    out.push(this.readyEvent());
  }

  private abortTransaction(out: ClientEvent[]): void {
    const tx = this.tx;
    if (tx) {
      // The RSET answers for this transaction: once its reply is in, settle() finds it clean.
      tx.serverOpen = false;
      if (tx.body === 'sending' || tx.body === 'stopped') tx.body = 'ended';
    }
    this.expectWrite('rset', formatCommand({ verb: 'RSET' }), out);
  }

  private greeted(caps: Capabilities, out: ClientEvent[]): void {
    this.caps = caps;
    this.phase = 'ready';
    out.push(this.readyEvent());
  }

  private sessionFailed(fact: AttemptFact, out: ClientEvent[]): void {
    out.push({ kind: 'session-failed', fact });
    if (fact.kind === 'reply' && fact.reply.code === 421) {
      this.close(out, `the peer closed the session (421 to ${fact.step})`);
      return;
    }
    // RFC 5321 §3.1: after a 554 greeting the server waits for QUIT; say it and leave.
    out.push(...this.startQuit());
  }

  private startQuit(): ClientEvent[] {
    this.phase = 'quitting';
    this.fifo.length = 0;
    this.fifo.push({ step: 'quit' });
    return [{ kind: 'write', data: formatCommand({ verb: 'QUIT' }) }];
  }

  /** `step`: the step whose reply showed the fault; by default the one awaited now. */
  private framingFault(reason: string, out: ClientEvent[], step: ClientStepName = this.awaiting ?? 'data-block'): void {
    out.push({ kind: 'framing-fault', reason });
    this.failOpen({ kind: 'framing-fault', step, reason }, out);
    this.close(out, `framing fault: ${reason}`);
  }

  /** Whatever is open fails with `fact`: the session while greeting, else the transaction. */
  private failOpen(fact: AttemptFact, out: ClientEvent[]): void {
    if (this.phase === 'greeting' || this.phase === 'hello') out.push({ kind: 'session-failed', fact });
    else this.decideRest(fact, out);
  }

  /** Every recipient without a fact gets `fact`; then the transaction is reported. */
  private decideRest(fact: AttemptFact, out: ClientEvent[]): void {
    const tx = this.tx;
    if (!tx || tx.reported) return;
    tx.facts.forEach((f, i) => {
      if (f === undefined) tx.facts[i] = fact;
    });
    this.report(tx, out);
  }

  private report(tx: Transaction, out: ClientEvent[]): void {
    if (tx.reported) return;
    tx.reported = true;
    const facts = tx.facts.map((f) => {
      // Invariant 5: decideRest/onRcpt leave no recipient without a fact.
      if (f === undefined) throw misuse('transaction reported with an undecided recipient');
      return f;
    });
    out.push({ kind: 'transaction', facts });
  }

  private close(out: ClientEvent[], reason: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.fifo.length = 0;
    if (this.tx) this.tx.body = this.tx.body === 'sending' ? 'stopped' : this.tx.body;
    out.push({ kind: 'close', reason });
  }

  private startBody(tx: Transaction, out: ClientEvent[]): void {
    tx.body = 'sending';
    out.push({ kind: 'send-body', mode: tx.mode });
  }

  private expectWrite(step: 'ehlo' | 'helo' | 'data-init' | 'rset', data: string, out: ClientEvent[]): void {
    this.fifo.push({ step });
    out.push({ kind: 'write', data });
  }

  private writeRcpt(tx: Transaction, out: ClientEvent[]): void {
    out.push({ kind: 'write', data: this.rcptCommand(tx) });
  }

  private rcptCommand(tx: Transaction): string {
    const index = tx.nextRcpt++;
    const rcpt = tx.message.recipients[index];
    if (rcpt === undefined) throw misuse(`no recipient ${index}`);
    this.fifo.push({ step: 'rcpt', index });
    const params: RcptParams = this.caps.dsn && rcpt.params ? rcpt.params : {};
    return formatCommand({ verb: 'RCPT', to: rcpt.mailbox, params, postmaster: false });
  }

  /** Parameters only for extensions the peer announced (RFC 5321 §4.1.1.11: 555 otherwise). */
  private mailParams(m: OutboundMessage): MailParams {
    const caps = this.caps;
    const p: { -readonly [K in keyof MailParams]: MailParams[K] } = {};
    if (caps.size) p.size = m.size;
    if (m.body === 'BINARYMIME') p.body = 'BINARYMIME';
    else if (m.body === '8BITMIME' && caps.eightBitMime) p.body = '8BITMIME';
    if (needsSmtputf8(m) && caps.smtputf8) p.smtputf8 = true;
    if (caps.dsn) {
      if (m.ret !== undefined) p.ret = m.ret;
      if (m.envid !== undefined) p.envid = m.envid;
    }
    return p;
  }

  /**
   * Local refusals before MAIL, permanent for this message at this peer:
   *  SIZE       larger than the announced limit → 5.3.4 (RFC 1870 §6)
   *  SMTPUTF8   needed, not offered → 5.6.7 (RFC 6531 §3.2)
   *  BINARYMIME needs BINARYMIME and CHUNKING (RFC 3030 §3); we do not convert → 5.6.3
   * An 8BITMIME body to a peer without 8BITMIME is sent unchanged, without BODY=: Postfix does
   * the same when it cannot or may not convert (disable_mime_output_conversion), and real peers
   * take it; RFC 6152 §3 would have us downgrade or bounce. A decision, recorded here.
   */
  private preflight(m: OutboundMessage): AttemptFact | undefined {
    const caps = this.caps;
    if (caps.sizeLimit !== undefined && m.size > caps.sizeLimit) {
      return { kind: 'preflight', check: 'size', detail: `message size ${m.size} exceeds the size limit ${caps.sizeLimit} the peer announced` };
    }
    if (needsSmtputf8(m) && !caps.smtputf8) {
      return { kind: 'preflight', check: 'smtputf8', detail: 'the message needs SMTPUTF8 and the peer does not offer it' };
    }
    if (m.body === 'BINARYMIME' && !(caps.binaryMime && caps.chunking && this.options.chunking)) {
      return { kind: 'preflight', check: 'binarymime', detail: 'the message is BINARYMIME and the peer does not offer BINARYMIME with CHUNKING' };
    }
    return undefined;
  }

  private bodyTx(mode: 'data' | 'bdat'): Transaction {
    const tx = this.tx;
    if (!tx || this.sending !== mode) {
      throw misuse(`${mode} body bytes while not sending a ${mode} body (check session.sending)`);
    }
    return tx;
  }

  private currentTx(): Transaction {
    if (!this.tx) throw misuse('a transaction reply with no transaction');
    return this.tx;
  }

  private readyEvent(): ClientEvent {
    return { kind: 'ready', capabilities: this.caps };
  }
}

function needsSmtputf8(m: OutboundMessage): boolean {
  return m.smtputf8 || (m.sender?.utf8 ?? false) || m.recipients.some((r) => r.mailbox.utf8);
}
