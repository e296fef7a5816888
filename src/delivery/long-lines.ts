/**
 * @module delivery/long-lines
 * Lines longer than 998 octets (RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6) on the way out. Inbound,
 * Postwire accepts them, because real mail has them; outbound, a peer without BINARYMIME gets them
 * according to the `long-lines` policy (DESIGN.md invariant 1, its one stated exception):
 *   wrap    (default) break each long line with CRLF SP so that no line exceeds 998 octets, as
 *           Postfix does (smtp_line_length_limit): in a header the break is folding, in a body
 *           it is the least damage anyone does. The break falls at exactly 998 octets, like
 *           Postfix: no search for white space, and a multi-octet UTF-8 character or a base64
 *           quantum may be split (only lines that were already out of spec are touched).
 *   pass    send the line unchanged (the peer may refuse or truncate it).
 *   bounce  refuse the message for this peer before MAIL (delivery/connection pre-scans).
 * A peer that offers BINARYMIME and CHUNKING gets every line unchanged by BDAT.
 *
 * What a line is, here and in LongLineCounter alike: the octets up to an LF, less a CR just
 * before that LF; a last line without LF loses a trailing CR the same way. Any other CR is an
 * octet of the line. Both classes agree, so "lines wrapped" equals "long lines counted".
 *
 * Who calls it: delivery/connection (LineWrapper between the spool and the codec, the counter in
 * its body meter and its pre-scan). Failure behaviour: pure and total; nothing throws except the
 * spool's own read errors, which findLongLine passes on. Memory: counters only (the column, one
 * held CR); output is the input's own subarrays plus shared constants, which must never be
 * mutated. A chunk with nothing to break comes back as the same Buffer (zero-copy).
 */
import { Buffer } from 'node:buffer';

/** RFC 5322 §2.1.1: lines are at most 998 characters, CRLF excluded. */
export const MAX_LINE_OCTETS = 998;

export type LongLinePolicy = 'wrap' | 'pass' | 'bounce';
export const DEFAULT_LONG_LINE_POLICY: LongLinePolicy = 'wrap';

/** The break LineWrapper inserts: CRLF SP. Shared; the identity lets tests find each insertion. */
export const LINE_BREAK: Buffer = Buffer.from('\r\n ', 'latin1');
const CR_ONLY = Buffer.from('\r', 'latin1');
const CR = 0x0d;
const LF = 0x0a;

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * Streaming: push() each chunk of the stored body in order, then end(). The concatenated output
 * equals the input with LINE_BREAK inserted wherever a line reached 998 octets and goes on.
 * A continuation line starts with the SP, so it holds 997 octets of the original line.
 */
export class LineWrapper {
  /** Breaks inserted so far. */
  breaks = 0;
  /** Lines that needed at least one break. */
  lines = 0;
  /** Octets of the current output line (the SP of a continuation included). */
  #column = 0;
  /** A CR ended the last chunk at column 998: a line end if an LF follows, else the 999th octet. */
  #heldCr = false;
  #lineBroken = false;

  push(chunk: Uint8Array): Buffer[] {
    const buf = asBuffer(chunk);
    if (buf.length === 0) return [];
    const out: Buffer[] = [];
    if (this.#heldCr) {
      this.#heldCr = false;
      if (buf[0] !== LF) this.#break(out);
      out.push(CR_ONLY);
      if (buf[0] !== LF) this.#column += 1;
    }
    let start = 0; // the first octet of buf not yet in out
    let pos = 0; // the first octet of the current line's rest
    for (;;) {
      const lf = buf.indexOf(LF, pos);
      const end = lf < 0 ? buf.length : lf;
      // A CR just before the LF belongs to the line end; as the chunk's last octet, maybe.
      const content = end > pos && buf[end - 1] === CR ? end - 1 : end;
      while (this.#column + (content - pos) > MAX_LINE_OCTETS) {
        const cut = pos + (MAX_LINE_OCTETS - this.#column);
        if (cut > start) out.push(buf.subarray(start, cut));
        this.#break(out);
        start = pos = cut;
      }
      this.#column += content - pos;
      if (lf >= 0) {
        this.#column = 0;
        this.#lineBroken = false;
        pos = lf + 1;
        if (pos < buf.length) continue;
        break;
      }
      if (content < end) {
        // The chunk ends in CR: at column 998 its fate waits for the next octet.
        if (this.#column === MAX_LINE_OCTETS) {
          this.#heldCr = true;
          if (content > start) out.push(buf.subarray(start, content));
          return out;
        }
        this.#column += 1;
      }
      break;
    }
    if (start < buf.length) out.push(start === 0 ? buf : buf.subarray(start));
    return out;
  }

  /** The body is over: a held CR goes out as it came (a trailing CR is not counted, as above). */
  end(): Buffer[] {
    const out = this.#heldCr ? [CR_ONLY] : [];
    this.#heldCr = false;
    this.#column = 0;
    this.#lineBroken = false;
    return out;
  }

  #break(out: Buffer[]): void {
    out.push(LINE_BREAK);
    this.breaks++;
    if (!this.#lineBroken) this.lines++;
    this.#lineBroken = true;
    this.#column = 1;
  }
}

/** Counts lines over 998 octets in a stream, chunk-boundary safe; counters only. */
export class LongLineCounter {
  count = 0;
  /** Octets of the current line so far, a CR before the LF included. */
  #line = 0;
  /** The previous chunk's last octet. */
  #last = -1;

  push(chunk: Uint8Array): void {
    const buf = asBuffer(chunk);
    let start = 0;
    for (let lf = buf.indexOf(LF, start); lf >= 0; lf = buf.indexOf(LF, start)) {
      const before = lf > 0 ? buf[lf - 1] : this.#last;
      if (this.#line + (lf - start) - (before === CR ? 1 : 0) > MAX_LINE_OCTETS) this.count++;
      this.#line = 0;
      start = lf + 1;
    }
    this.#line += buf.length - start;
    if (buf.length > 0) this.#last = buf[buf.length - 1] ?? -1;
  }

  /** At the end of the body: a last line without a line end counts too. Returns the count. */
  end(): number {
    if (this.#line - (this.#last === CR ? 1 : 0) > MAX_LINE_OCTETS) this.count++;
    this.#line = 0;
    this.#last = -1;
    return this.count;
  }
}

/**
 * Reads `body` until the first line over 998 octets (true) or the end (false), then closes it
 * (for-await calls return()). A read error rejects. Cost: one sequential read of the spool up to
 * the first long line, CPU in Buffer.indexOf; used only by the `bounce` policy, before MAIL.
 */
export async function findLongLine(body: AsyncIterable<Uint8Array>): Promise<boolean> {
  const counter = new LongLineCounter();
  for await (const chunk of body) {
    counter.push(chunk);
    if (counter.count > 0) return true;
  }
  return counter.end() > 0;
}
