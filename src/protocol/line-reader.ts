/**
 * @module protocol/line-reader
 * Frames SMTP command lines out of a byte stream. CRLF is the only line end; everything else a
 * client might use as one is a coded error, decided here once so no later stage can disagree
 * about where a command ends (Postfix smtpd BARE_LF_FLAG_*; the opposite of `/\r?\n/`).
 *
 * Who calls it: smtpd/connection pushes socket bytes and pulls events with next() until it gets
 * undefined; when a DATA/BDAT command switches the stream to message bytes it takes the
 * unconsumed bytes with takeBuffered() and hands them to protocol/dot.
 *
 * Failure behaviour: a bad line is consumed through its line end (any LF) and reported once:
 * BARE_LF (ended by an LF without CR), BARE_CR (a CR not followed by LF inside it), NUL, or
 * LINE_TOO_LONG (more than maxLineLength octets counting the CRLF). An over-long line is
 * reported as soon as it is certain and then discarded as it arrives, so memory stays near
 * maxLineLength plus the last pushed chunk whatever the client sends. Discarding ends at the
 * next LF (a bare LF ends a bad line everywhere in this reader, consistently).
 *
 * Trust: none in the input. Pushed chunks are referenced, not copied, and never modified; lines
 * returned are views into them, so callers must not mutate a chunk after pushing it.
 */
import { Buffer } from 'node:buffer';

/** Octets including CRLF (RFC 5321 §4.5.3.1.4). */
export const DEFAULT_MAX_COMMAND_LINE = 512;

export type LineErrorCode = 'LINE_TOO_LONG' | 'BARE_LF' | 'BARE_CR' | 'NUL';

export type LineEvent =
  | { readonly kind: 'line'; readonly line: Buffer }
  | { readonly kind: 'error'; readonly code: LineErrorCode };

const CR = 0x0d;
const LF = 0x0a;
const EMPTY = Buffer.alloc(0);

export class LineReader {
  private readonly maxLineLength: number;
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Offset in buf from which the next LF search starts; bytes before it hold no LF. */
  private scanFrom = 0;
  /** Inside an over-long line already reported: drop bytes up to the next LF. */
  private discarding = false;

  constructor(options: { maxLineLength?: number } = {}) {
    const max = options.maxLineLength ?? DEFAULT_MAX_COMMAND_LINE;
    if (!Number.isInteger(max) || max < 3) throw new RangeError(`maxLineLength ${max} too small`);
    this.maxLineLength = max;
  }

  get buffered(): number {
    return this.buf.length - this.pos;
  }

  push(chunk: Uint8Array): void {
    let bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.discarding) {
      const lf = bytes.indexOf(LF);
      if (lf < 0) return;
      this.discarding = false;
      bytes = bytes.subarray(lf + 1);
    }
    if (bytes.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.buf = bytes;
      this.pos = this.scanFrom = 0;
      return;
    }
    this.buf = Buffer.concat([this.buf.subarray(this.pos), bytes]);
    this.scanFrom -= this.pos;
    this.pos = 0;
  }

  next(): LineEvent | undefined {
    const buf = this.buf;
    const start = this.pos;
    const lf = buf.indexOf(LF, this.scanFrom);
    if (lf < 0) return this.incomplete();
    this.pos = this.scanFrom = lf + 1;
    if (lf + 1 - start > this.maxLineLength) return error('LINE_TOO_LONG');
    if (lf === start || buf[lf - 1] !== CR) return error('BARE_LF');
    const line = buf.subarray(start, lf - 1);
    if (line.indexOf(CR) >= 0) return error('BARE_CR');
    if (line.indexOf(0) >= 0) return error('NUL');
    return { kind: 'line', line };
  }

  takeBuffered(): Buffer {
    const rest = this.buf.subarray(this.pos);
    this.buf = EMPTY;
    this.pos = this.scanFrom = 0;
    this.discarding = false;
    return rest;
  }

  /**
   * No LF yet. The line is certainly too long once it holds maxLineLength octets: even if the
   * last one is the CR, the LF still to come makes one more. Reporting at that exact point makes
   * the verdict independent of how the bytes were split into chunks.
   */
  private incomplete(): LineEvent | undefined {
    if (this.buf.length - this.pos < this.maxLineLength) {
      this.scanFrom = this.buf.length;
      return undefined;
    }
    this.buf = EMPTY;
    this.pos = this.scanFrom = 0;
    this.discarding = true;
    return error('LINE_TOO_LONG');
  }
}

function error(code: LineErrorCode): LineEvent {
  return { kind: 'error', code };
}
