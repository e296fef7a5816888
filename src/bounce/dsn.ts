/**
 * @module bounce/dsn
 * Builds RFC 3464 delivery status notifications: (message meta, recipient outcomes) → the bytes of
 * a multipart/report (RFC 6522) split around the original message, which the caller streams
 * between `head` and `tail` (the header section for RET=HDRS, the whole message for RET=FULL).
 *
 * Who calls it: qmgr, when recipients bounce, expire, are bounced by an operator, or pass the
 * delay-warning age; it enqueues the result through cleanup with `MAIL FROM:<>` to `Dsn.recipient`.
 *
 * Failure behaviour: never throws on content. Anything that cannot legally appear in a header
 * (controls, non-ASCII on the ASCII path) is escaped as RFC 6533 `\x{HEX}`; values are folded and,
 * only if one token exceeds 998 octets, hard-broken. `undefined` means "send nothing" and planDsn
 * says why: a null sender (nothing bounces a bounce, DESIGN.md §4) or no recipient whose NOTIFY
 * asks for this report.
 *
 * Trust: addresses come from the envelope (already parsed by protocol/). Remote replies, the
 * operator's reason and ORCPT values are arbitrary text and are treated as such.
 * Pure: no clock, no randomness, no I/O; the boundary is a hash of queue id, time and an optional
 * seed, so the same input gives the same bytes.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { decodeUtf8AddrXtext, encodeUtf8AddrXtext, encodeXtext } from '../protocol/index.js';
import type { BodyType, DsnNotify, DsnRet } from '../protocol/index.js';
import { rfc5322Date } from '../util/index.js';

export type DsnAction = 'failed' | 'delayed' | 'delivered' | 'expanded' | 'relayed';
/** NOTIFY as the queue keeps it: absent = the RFC 3461 default, 'NEVER' = no report at all. */
export type NotifySetting = readonly DsnNotify[] | 'NEVER' | undefined;

export interface DsnRecipient {
  /** The envelope recipient (`local@domain`) the outcome is about. */
  readonly address: string;
  /** ORCPT as `addr-type;address` (xtext decoded; a `utf-8` address may also be in xtext form). */
  readonly orcpt?: string;
  /** The recipient's NOTIFY; buildDsn drops recipients it does not allow (see shouldNotify). */
  readonly notify?: readonly DsnNotify[] | 'NEVER';
  readonly action: DsnAction;
  /** RFC 3463 status, e.g. `5.1.1`; a malformed one is replaced by the action's generic code. */
  readonly status: string;
  /** `dns; mx.example.com` (type and name, RFC 3464 §2.3.5). */
  readonly remoteMta?: string;
  /** The remote reply verbatim, lines joined by `\n`. */
  readonly diagnosticCode?: string;
  readonly lastAttemptDate?: number;
  readonly willRetryUntil?: number;
}

export interface DsnInput {
  /** Our hostname: Reporting-MTA and the MAILER-DAEMON address. */
  readonly reportingMta: string;
  readonly queueId: string;
  /** Milliseconds since the epoch. */
  readonly arrivalDate: number;
  /** Milliseconds since the epoch; the Date: of the report. */
  readonly now: number;
  readonly envelope: {
    readonly sender: string;
    readonly dsnRet?: DsnRet;
    readonly dsnEnvid?: string;
    readonly smtputf8: boolean;
    /** BODY= of the original; absent is treated as possibly 8-bit (the safe label). */
    readonly body?: BodyType;
  };
  readonly recipients: readonly DsnRecipient[];
  /** The operator's reason (`postwire queue bounce --reason …`), quoted in the human part. */
  readonly reason?: string;
  readonly messageIdDomain: string;
  /** Extra input to the boundary hash; pass random bytes in production to make it unguessable. */
  readonly boundarySeed?: string;
}

export interface Dsn {
  /** The DSN's own reverse-path: always null (`MAIL FROM:<>`). */
  readonly sender: '';
  /** Where it goes: the original envelope sender. */
  readonly recipient: string;
  /** Everything up to the first byte of the returned original (ends with the part's blank line). */
  readonly head: Buffer;
  /** The closing delimiter; starts with CRLF, so an original without a final CRLF still parses. */
  readonly tail: Buffer;
  /** What to stream between head and tail: the header section, or the whole original. */
  readonly includeOriginal: 'headers' | 'full';
  /** The DSN needs SMTPUTF8 (only when the sender address itself is non-ASCII). */
  readonly smtputf8: boolean;
  /** BODY= for the DSN: 8BITMIME when the returned original or the text part may carry 8-bit. */
  readonly body: '7BIT' | '8BITMIME';
  readonly kind: 'failure' | 'delay' | 'success';
  /** The recipients reported on (after NOTIFY filtering), for the message history. */
  readonly reported: readonly string[];
  readonly messageId: string;
}

export type DsnPlan =
  | { readonly send: true; readonly recipients: readonly DsnRecipient[] }
  | { readonly send: false; readonly reason: 'null-sender' | 'nothing-to-report' };

/**
 * Whether a recipient's NOTIFY asks for a report about this action (RFC 3461 §4.1).
 * - NEVER: nothing, ever.
 * - failed: FAILURE, or NOTIFY absent (the RFC's default).
 * - delayed: DELAY, or NOTIFY absent. RFC 3461 §4.1 lets the MTA choose FAILURE or FAILURE,DELAY
 *   as the default; Postwire chooses FAILURE,DELAY so a sender without DSN support still hears
 *   that mail is stuck (qmgr decides *when*: the delay-warning age). An explicit list without
 *   DELAY means no delay report.
 * - delivered / relayed / expanded: only an explicit SUCCESS (§4.1: never by default). `relayed`
 *   is the report for a next hop without DSN, `expanded` for an alias/list expansion (§6.2.1).
 */
export function shouldNotify(notify: NotifySetting, action: DsnAction): boolean {
  if (notify === 'NEVER') return false;
  switch (action) {
    case 'failed':
      return notify === undefined || notify.includes('FAILURE');
    case 'delayed':
      return notify === undefined || notify.includes('DELAY');
    case 'delivered':
    case 'relayed':
    case 'expanded':
      return notify !== undefined && notify.includes('SUCCESS');
  }
}

/** The recipients a report may mention, in input order. */
export function whichRecipientsNotify(recipients: readonly DsnRecipient[]): DsnRecipient[] {
  return recipients.filter((r) => shouldNotify(r.notify, r.action));
}

/**
 * Whether to send a report at all, and about whom. A null sender gets nothing: the message is
 * itself a bounce (or wants none), and a report about it could loop; qmgr logs and drops it
 * (Postfix's double bounce without a postmaster copy).
 */
export function planDsn(input: DsnInput): DsnPlan {
  if (input.envelope.sender === '') return { send: false, reason: 'null-sender' };
  const recipients = whichRecipientsNotify(input.recipients);
  if (recipients.length === 0) return { send: false, reason: 'nothing-to-report' };
  return { send: true, recipients };
}

const CRLF = '\r\n';
/** RFC 5322 §2.1.1: SHOULD fold at 78 characters, MUST stay within 998 octets. */
const SOFT_LIMIT = 78;
const HARD_LIMIT = 998;
const NON_ASCII = /[^\x00-\x7f]/;
const STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;

/** The report; `undefined` exactly when planDsn says not to send (null sender, or NOTIFY). */
export function buildDsn(input: DsnInput): Dsn | undefined {
  const plan = planDsn(input);
  if (!plan.send) return undefined;
  const recipients = plan.recipients;
  const env = input.envelope;
  // Only a non-ASCII sender address forces SMTPUTF8 on the DSN: every other DSN is built so it
  // can reach the sender through peers without SMTPUTF8 (RFC 6533 §3 ASCII forms, QP text).
  const global = NON_ASCII.test(env.sender);
  const kind: Dsn['kind'] = recipients.some((r) => r.action === 'failed')
    ? 'failure'
    : recipients.some((r) => r.action === 'delayed')
      ? 'delay'
      : 'success';

  // RET (RFC 3461 §4.3) is about failure reports; delay and success reports return headers only.
  // A BINARYMIME original cannot go in message/rfc822 without BINARYMIME on every hop back.
  const wantsFull = env.dsnRet === 'FULL' && kind === 'failure';
  const binary = env.body === 'BINARYMIME';
  const includeOriginal: Dsn['includeOriginal'] = wantsFull && !binary ? 'full' : 'headers';
  const originalMay8bit = env.body !== '7BIT' || env.smtputf8;

  const text = humanText(input, recipients, kind, includeOriginal, wantsFull && binary);
  const textPart = encodeText(text, global);
  const statusLines = deliveryStatus(input, recipients, global);
  const statusBody = statusLines.join(CRLF);
  const status8bit = NON_ASCII.test(statusBody);

  const originalType =
    includeOriginal === 'full'
      ? env.smtputf8 ? 'message/global' : 'message/rfc822'
      : env.smtputf8 ? 'message/global-headers' : 'text/rfc822-headers';
  const originalDescription = includeOriginal === 'full' ? 'Undelivered Message' : 'Message Headers';

  const boundary = pickBoundary(input, [textPart.body, statusBody]);
  const any8bit = textPart.cte === '8bit' || status8bit || originalMay8bit;
  const messageId = `<${idPart(input.queueId)}.${input.now.toString(36)}.dsn@${idPart(input.messageIdDomain)}>`;
  const reportType = global ? 'global-delivery-status' : 'delivery-status';

  const top = [
    ...field('From', `Mail Delivery System <MAILER-DAEMON@${headerText(input.reportingMta, global)}>`),
    ...field('To', `<${headerText(env.sender, global)}>`),
    ...field('Subject', SUBJECT[kind]),
    ...field('Date', rfc5322Date(input.now)),
    ...field('Message-ID', messageId),
    ...field('Auto-Submitted', 'auto-replied'),
    ...field('MIME-Version', '1.0'),
    ...field('Content-Type', `multipart/report; report-type=${reportType}; boundary="${boundary}"`),
    ...field('Content-Transfer-Encoding', any8bit ? '8bit' : '7bit'),
  ];
  const head = [
    ...top,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    ...field('Content-Description', 'Notification'),
    ...field('Content-Type', `text/plain; charset=${textPart.charset}`),
    ...field('Content-Transfer-Encoding', textPart.cte),
    '',
    textPart.body,
    `--${boundary}`,
    ...field('Content-Description', 'Delivery report'),
    ...field('Content-Type', global ? 'message/global-delivery-status' : 'message/delivery-status'),
    ...(status8bit ? field('Content-Transfer-Encoding', '8bit') : []),
    '',
    statusBody,
    `--${boundary}`,
    ...field('Content-Description', originalDescription),
    ...field('Content-Type', originalType),
    ...field('Content-Transfer-Encoding', originalMay8bit ? '8bit' : '7bit'),
    '',
    '',
  ].join(CRLF);

  return {
    sender: '',
    recipient: env.sender,
    head: Buffer.from(head, 'utf8'),
    tail: Buffer.from(`${CRLF}--${boundary}--${CRLF}`, 'latin1'),
    includeOriginal,
    smtputf8: global,
    body: any8bit ? '8BITMIME' : '7BIT',
    kind,
    reported: recipients.map((r) => r.address),
    messageId,
  };
}

const SUBJECT: Record<Dsn['kind'], string> = {
  failure: 'Undelivered Mail Returned to Sender',
  delay: 'Delayed Mail (still being retried)',
  success: 'Successful Mail Delivery Report',
};

// ---------------------------------------------------------------------------------------------
// Part 1: the human explanation.

function humanText(
  input: DsnInput,
  recipients: readonly DsnRecipient[],
  kind: Dsn['kind'],
  includeOriginal: Dsn['includeOriginal'],
  binaryFellBack: boolean,
): string {
  const out: string[] = [`This is the mail delivery system at ${input.reportingMta}.`, ''];
  const failed = recipients.filter((r) => r.action === 'failed');
  const delayed = recipients.filter((r) => r.action === 'delayed');
  const succeeded = recipients.filter((r) => r.action !== 'failed' && r.action !== 'delayed');
  if (failed.length > 0) {
    out.push('Your message could not be delivered to one or more recipients.');
    out.push('This is a permanent error: it will not be retried for them.');
  }
  if (delayed.length > 0) {
    if (failed.length > 0) out.push('');
    out.push('Your message has not yet been delivered to one or more recipients.');
    out.push('It is still being retried; you do not need to send it again. You');
    out.push('will be told if delivery finally fails.');
  }
  if (succeeded.length > 0) {
    if (failed.length + delayed.length > 0) out.push('');
    out.push('Your message was delivered, or passed on, to one or more recipients.');
  }
  if (input.reason !== undefined && input.reason.trim() !== '') {
    out.push('', `The operator of ${input.reportingMta} gave this reason:`);
    for (const line of splitLines(input.reason)) out.push(`    ${line}`);
  }
  for (const r of recipients) {
    out.push('', `<${r.address}>: ${describe(r)}`);
    const orig = r.orcpt === undefined ? undefined : parseOrcpt(r.orcpt);
    if (orig !== undefined && orig.address !== r.address) out.push(`    (originally addressed to ${orig.address})`);
    if (r.remoteMta !== undefined) out.push(`    Remote server: ${r.remoteMta}`);
    if (r.diagnosticCode !== undefined && r.diagnosticCode !== '') {
      out.push(r.remoteMta !== undefined ? '    It replied:' : '    Reason:');
      for (const line of splitLines(r.diagnosticCode)) out.push(`        ${line}`);
    }
  }
  out.push('');
  if (binaryFellBack) {
    out.push('Only the headers of your message are attached: it is a binary');
    out.push('(BINARYMIME) message, which cannot be returned whole.');
  } else {
    out.push(includeOriginal === 'full' ? 'Your message is attached.' : 'The headers of your message are attached.');
  }
  if (kind === 'failure') out.push('', 'Arrival of your message: ' + rfc5322Date(input.arrivalDate) + '.');
  return out.join('\n');
}

function describe(r: DsnRecipient): string {
  const status = statusOf(r);
  switch (r.action) {
    case 'failed':
      return `delivery failed permanently (status ${status})`;
    case 'delayed':
      return r.willRetryUntil !== undefined
        ? `delivery delayed (status ${status}); retrying until ${rfc5322Date(r.willRetryUntil)}`
        : `delivery delayed (status ${status}); still retrying`;
    case 'delivered':
      return `delivered (status ${status})`;
    case 'relayed':
      return `passed on to a system that sends no delivery reports (status ${status})`;
    case 'expanded':
      return `delivered and forwarded to further recipients (status ${status})`;
  }
}

/** Lines of free text: `\n` or CRLF separated, a lone trailing newline ignored. */
function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * The text part's transfer form. Plain 7bit when it is printable ASCII in short lines; otherwise
 * quoted-printable UTF-8, which keeps every octet of a remote reply (even a stray CR) exactly while
 * staying ASCII on the wire. On the SMTPUTF8 path UTF-8 may go raw as 8bit.
 */
function encodeText(text: string, global: boolean): { body: string; cte: '7bit' | '8bit' | 'quoted-printable'; charset: string } {
  const lines = text.split('\n');
  const clean = !/[\x00-\x08\x0a-\x1f\x7f]/.test(text.replace(/\n/g, '')) && lines.every((l) => Buffer.byteLength(l, 'utf8') <= HARD_LIMIT);
  const ascii = !NON_ASCII.test(text);
  if (clean && ascii) return { body: lines.join(CRLF), cte: '7bit', charset: 'us-ascii' };
  if (clean && global) return { body: lines.join(CRLF), cte: '8bit', charset: 'utf-8' };
  return { body: quotedPrintable(lines), cte: 'quoted-printable', charset: 'utf-8' };
}

/** RFC 2045 §6.7, lines of at most 76 characters; trailing blanks encoded (rule 3). */
function quotedPrintable(lines: readonly string[]): string {
  const out: string[] = [];
  for (const line of lines) {
    const bytes = Buffer.from(line, 'utf8');
    let cur = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i] ?? 0;
      const last = i === bytes.length - 1;
      const literal = (b >= 0x21 && b <= 0x7e && b !== 0x3d) || ((b === 0x20 || b === 0x09) && !last);
      const enc = literal ? String.fromCharCode(b) : `=${hex(b, 2)}`;
      if (cur.length + enc.length > 75) {
        out.push(`${cur}=`);
        cur = '';
      }
      cur += enc;
    }
    out.push(cur);
  }
  return out.join(CRLF);
}

// ---------------------------------------------------------------------------------------------
// Part 2: message/delivery-status (RFC 3464 §2.2, §2.3), or message/global-delivery-status.

function deliveryStatus(input: DsnInput, recipients: readonly DsnRecipient[], global: boolean): string[] {
  const env = input.envelope;
  // Per-message fields in the order of the RFC 3464 §2.1 grammar, extensions last.
  const out: string[] = [];
  if (env.dsnEnvid !== undefined) out.push(...field('Original-Envelope-Id', envid(env.dsnEnvid)));
  out.push(...field('Reporting-MTA', `dns; ${headerText(input.reportingMta, global)}`));
  out.push(...field('Arrival-Date', rfc5322Date(input.arrivalDate)));
  out.push(...field('X-Postwire-Queue-ID', headerText(input.queueId, global)));
  out.push(...field('X-Postwire-Sender', typedAddress(env.sender, global)));
  for (const r of recipients) {
    out.push('');
    if (r.orcpt !== undefined) out.push(...field('Original-Recipient', originalRecipient(r.orcpt, global)));
    out.push(...field('Final-Recipient', typedAddress(r.address, global)));
    out.push(...field('Action', r.action));
    out.push(...field('Status', statusOf(r)));
    if (r.remoteMta !== undefined) out.push(...field('Remote-MTA', headerText(r.remoteMta, global)));
    if (r.diagnosticCode !== undefined && r.diagnosticCode.trim() !== '') {
      // Each reply line starts a folded line, so unfolding joins them with one space (RFC 3464
      // §2.3.6 has one line of *text; the human part keeps the line structure).
      const pieces = splitLines(r.diagnosticCode).map((l) => headerText(l, global));
      out.push(...field('Diagnostic-Code', pieces.map((p, i) => (i === 0 ? `smtp; ${p}` : p)).join('\n')));
    }
    if (r.lastAttemptDate !== undefined) out.push(...field('Last-Attempt-Date', rfc5322Date(r.lastAttemptDate)));
    if (r.action === 'delayed' && r.willRetryUntil !== undefined) {
      out.push(...field('Will-Retry-Until', rfc5322Date(r.willRetryUntil)));
    }
  }
  out.push('');
  return out;
}

function statusOf(r: DsnRecipient): string {
  if (STATUS.test(r.status)) return r.status;
  return r.action === 'failed' ? '5.0.0' : r.action === 'delayed' ? '4.0.0' : '2.0.0';
}

/**
 * `rfc822;local@domain`, or for a non-ASCII address RFC 6533's `utf-8;` type: the
 * utf-8-addr-xtext form (ASCII) in message/delivery-status, the raw utf-8-address form in
 * message/global-delivery-status.
 */
function typedAddress(address: string, global: boolean): string {
  if (!NON_ASCII.test(address)) return `rfc822;${headerText(address, false)}`;
  return global ? `utf-8;${headerText(address, true)}` : `utf-8;${encodeUtf8AddrXtext(address)}`;
}

/**
 * ORCPT → Original-Recipient. RFC 3461 §4.2: the DSN carries the address as it was before xtext
 * encoding (printable ASCII for rfc822). A `utf-8` address is re-encoded for the path (RFC 6533
 * §3); an rfc822 one that turns out non-ASCII is presented as `utf-8` rather than broken.
 */
function originalRecipient(orcpt: string, global: boolean): string {
  const parsed = parseOrcpt(orcpt);
  if (parsed === undefined) return `unknown;${headerText(orcpt, global)}`;
  const { type, address } = parsed;
  if (type === 'utf-8' || type === 'rfc822') return typedAddress(address, global);
  // Any other registered type (x400, …): keep it, escaped to stay one legal header value.
  return `${type};${headerText(address, global)}`;
}

function parseOrcpt(orcpt: string): { type: string; address: string } | undefined {
  const semi = orcpt.indexOf(';');
  if (semi <= 0) return undefined;
  const type = orcpt.slice(0, semi).trim().toLowerCase();
  const raw = orcpt.slice(semi + 1).trim();
  // The queue may hold a utf-8 ORCPT decoded or still in xtext form; decoding the decoded form
  // either fails (it has `+` or `=`) or changes nothing unless it contains `\x{`.
  const address = type === 'utf-8' && raw.includes('\\x{') ? (decodeUtf8AddrXtext(raw) ?? raw) : raw;
  return { type, address };
}

/**
 * ENVID is kept decoded and shown so (RFC 3461 §4.4: printable ASCII and spaces); anything else,
 * or edge spaces that folding would lose, goes back to xtext.
 */
function envid(value: string): string {
  return /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value) ? value : encodeXtext(value);
}

// ---------------------------------------------------------------------------------------------
// Header lines.

/**
 * Escapes what cannot stand in a header value: controls other than TAB, DEL, and (off the
 * SMTPUTF8 path) every non-ASCII code point, as RFC 6533 `\x{HEX}`.
 */
function headerText(value: string, allowUtf8: boolean): string {
  let out = '';
  for (const ch of value) {
    const cp = ch.codePointAt(0) ?? 0;
    const control = (cp < 0x20 && cp !== 0x09) || cp === 0x7f;
    out += control || (!allowUtf8 && cp > 0x7f) ? `\\x{${cp.toString(16).toUpperCase()}}` : ch;
  }
  return out;
}

/**
 * One header field as lines without their CRLF. `\n` in the value forces a fold there. Folding
 * happens before white space only (RFC 5322 §2.2.3, so unfolding restores the text), at 78
 * characters when possible; a run without white space longer than 998 octets is hard-broken,
 * which adds a space on unfolding: the only way to keep the 998-octet limit.
 */
function field(name: string, value: string): string[] {
  const lines: string[] = [];
  let cur = `${name}:`;
  let fresh = true; // nothing but the field name (or nothing at all) on the current line yet
  const pieces = value.split('\n').map((p) => p.replace(/[ \t]+$/, '')).filter((p) => p.trim() !== '');
  pieces.forEach((piece, index) => {
    if (index > 0) {
      lines.push(cur);
      cur = '';
      fresh = true;
    }
    const segments = piece.match(/[ \t]*[^ \t]+/g) ?? [];
    segments.forEach((seg, i) => {
      const s = i === 0 && !/^[ \t]/.test(seg) ? ` ${seg}` : seg;
      if (!fresh && octets(cur) + octets(s) > SOFT_LIMIT) {
        lines.push(cur);
        cur = '';
      }
      cur += s;
      fresh = false;
    });
  });
  lines.push(cur);
  return lines.flatMap(hardBreak);
}

function hardBreak(line: string): string[] {
  if (octets(line) <= HARD_LIMIT) return [line];
  const out: string[] = [];
  let cur = '';
  for (const ch of line) {
    if (octets(cur) + octets(ch) > HARD_LIMIT) {
      out.push(cur);
      cur = ' ';
    }
    cur += ch;
  }
  out.push(cur);
  return out;
}

function octets(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Boundary, ids, dates.

/**
 * The boundary starts with `=_`, which quoted-printable content cannot contain (`=` must be
 * followed by two hex digits) and base64 content never does, and carries 96 bits of a hash of
 * the queue id, the time and the seed. The parts built here are scanned and the boundary changed
 * if one of them holds it (a remote reply could quote one). The returned original is streamed and
 * cannot be scanned: the residual risk is a 7bit/8bit original containing `--` and this exact
 * string, which needs the queue id and the millisecond of the report (and the seed, if given).
 */
function pickBoundary(input: DsnInput, parts: readonly string[]): string {
  for (let n = 0; ; n++) {
    const hash = createHash('sha256')
      .update(`${input.queueId}\0${input.now}\0${input.boundarySeed ?? ''}\0${n}`)
      .digest('hex')
      .slice(0, 24);
    const boundary = `=_postwire-dsn/${hash}`;
    if (!parts.some((p) => p.includes(boundary))) return boundary;
  }
}

/** A Message-ID part built from arbitrary text: dot-atom characters kept, anything else hex. */
function idPart(text: string): string {
  const safe = text.replace(/[^A-Za-z0-9.\-_]/g, (c) => `=${hex(c.charCodeAt(0), 2)}`).replace(/^\.+|\.+$/g, '').replace(/\.{2,}/g, '.');
  return safe === '' ? 'postwire' : safe;
}

function hex(n: number, width: number): string {
  return n.toString(16).toUpperCase().padStart(width, '0');
}
