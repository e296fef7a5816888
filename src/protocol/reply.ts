/**
 * @module protocol/reply
 * SMTP replies (RFC 5321 §4.2) in both directions: `reply()` builds a Reply value, `formatReply()`
 * renders it for the wire, `ReplyReader` turns a server's byte stream back into Replies.
 *
 * Who calls it: the server session and smtpd build and format replies; the delivery client feeds
 * socket bytes to a ReplyReader and reads Reply values off it.
 *
 * Failure behaviour: formatReply never emits a bare CR or LF — a caller's text containing one is
 * flattened to a space, so reply text can never inject a line. ReplyReader throws ProtocolError:
 *   REPLY_SYNTAX          a line that is not `ddd[ -]text`, or a continuation with another code
 *   REPLY_TOO_LONG        a line longer than maxLineLength octets (default 4096)
 *   REPLY_TOO_MANY_LINES  a multi-line reply of more than maxLines lines (default 1000)
 * After a throw the reader's state is unspecified: the connection must be dropped.
 * Other codes thrown by sibling modules (all programming errors, not peer errors):
 *   PUSH_AFTER_END        DataDecoder/DotEncoder pushed after end-of-data / end()
 *   BAD_COMMAND           formatCommand given a field holding CR, LF or NUL
 *
 * Trust: nothing from the peer. Replies read are accepted ending in CRLF or a bare LF (Postfix's
 * client is as lenient); text is decoded as UTF-8 with replacement characters.
 */
import { Buffer } from 'node:buffer';
import type { Reply } from './types.js';

/** An error in the SMTP byte stream or in how the codec was driven; `code` is stable. */
export class ProtocolError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

/** Builds a reply; with no lines, the reply has one empty line. */
export function reply(code: number, enhanced: string | undefined, ...lines: string[]): Reply {
  if (!Number.isInteger(code) || code < 200 || code > 599) throw new RangeError(`reply code ${code} out of range`);
  const text = lines.length === 0 ? [''] : lines;
  return enhanced === undefined ? { code, lines: text } : { code, enhanced, lines: text };
}

const NEWLINES = /[\r\n]+/g;

export function formatReply(r: Reply): string {
  const lines = r.lines.length === 0 ? [''] : r.lines;
  const last = lines.length - 1;
  let out = '';
  lines.forEach((line, i) => {
    const clean = line.replace(NEWLINES, ' ');
    const text = r.enhanced === undefined ? clean : clean === '' ? r.enhanced : `${r.enhanced} ${clean}`;
    const rendered = `${r.code}${i === last ? ' ' : '-'}${text}`;
    // RFC 4954's continue-req is `"334" SP [base64]`: an empty challenge keeps its space.
    out += (r.code === 334 && text === '' ? rendered : rendered.trimEnd()) + '\r\n';
  });
  return out;
}

const REPLY_LINE = /^([2-5][0-9][0-9])(?:([ -])(.*))?$/s;
const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/;
const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

interface PendingLine {
  readonly code: number;
  readonly text: string;
}

/** Incremental multi-line reply parser for the client side. */
export class ReplyReader {
  private readonly maxLineLength: number;
  private readonly maxLines: number;
  private buf: Buffer = EMPTY;
  private scanned = 0;
  private pending: PendingLine[] = [];
  private readonly decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(options: { maxLineLength?: number; maxLines?: number } = {}) {
    this.maxLineLength = options.maxLineLength ?? 4096;
    this.maxLines = options.maxLines ?? 1000;
  }

  push(chunk: Uint8Array): Reply[] {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.buf = this.buf.length === 0 ? bytes : Buffer.concat([this.buf, bytes]);
    const replies: Reply[] = [];
    let start = 0;
    for (let lf = this.buf.indexOf(LF, this.scanned); lf >= 0; lf = this.buf.indexOf(LF, start)) {
      if (lf + 1 - start > this.maxLineLength) throw tooLong(this.maxLineLength);
      const end = lf > start && this.buf[lf - 1] === CR ? lf - 1 : lf;
      const done = this.line(this.decoder.decode(this.buf.subarray(start, end)));
      if (done) replies.push(done);
      start = lf + 1;
    }
    this.buf = start >= this.buf.length ? EMPTY : this.buf.subarray(start);
    this.scanned = this.buf.length;
    if (this.buf.length > this.maxLineLength) throw tooLong(this.maxLineLength);
    return replies;
  }

  /** Adds one line; returns the reply it completes, if any. */
  private line(text: string): Reply | undefined {
    const m = REPLY_LINE.exec(text);
    if (!m) throw new ProtocolError('REPLY_SYNTAX', `malformed reply line: ${JSON.stringify(text.slice(0, 80))}`);
    const code = Number(m[1]);
    const first = this.pending[0];
    if (first && first.code !== code) {
      throw new ProtocolError('REPLY_SYNTAX', `reply code changed from ${first.code} to ${code} inside a multi-line reply`);
    }
    this.pending.push({ code, text: m[3] ?? '' });
    if (m[2] === '-') {
      if (this.pending.length >= this.maxLines) throw new ProtocolError('REPLY_TOO_MANY_LINES', `reply longer than ${this.maxLines} lines`);
      return undefined;
    }
    const lines = this.pending;
    this.pending = [];
    return assemble(code, lines.map((l) => l.text));
  }
}

/** The enhanced code counts only when every line carries it (RFC 2034 §4 says all lines do). */
function assemble(code: number, texts: string[]): Reply {
  const codes = texts.map((t) => ENHANCED.exec(t)?.[1]);
  const enhanced = codes[0];
  if (enhanced === undefined || codes.some((c) => c === undefined)) return { code, lines: texts };
  const lines = texts.map((t, i) => t.slice((codes[i] ?? '').length).replace(/^ /, ''));
  return { code, enhanced, lines };
}

function tooLong(max: number): ProtocolError {
  return new ProtocolError('REPLY_TOO_LONG', `reply line longer than ${max} octets`);
}
