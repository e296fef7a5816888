/**
 * @module cli/send-client
 * The SMTP client of `postwire send`: one connection, one transaction, no pipelining, to a
 * Postwire (or any SMTP server) the caller names. Kept minimal on purpose: cli/ may not import
 * the protocol codec (scripts/check-imports.mjs), and a submission client needs only to read
 * replies (multi-line included) and write a handful of commands and an already dot-stuffed body.
 *
 * Failure: submit() never throws for a refusal; it resolves with the reply that stopped the
 * transaction (`stage` says which command) or with a connection problem (`code` 0), and it
 * always closes the socket. Trust: the server is trusted to speak SMTP; a reply line that is not
 * `DDD[ -]text` is a failure, never a guess.
 */
import { connect, type Socket } from 'node:net';

export interface SubmitRequest {
  readonly host: string;
  readonly port: number;
  /** Our EHLO name. */
  readonly helo: string;
  /** Reverse-path without brackets; '' for the null sender. */
  readonly sender: string;
  readonly recipients: readonly string[];
  /** The message, CRLF line ends, dot-stuffed, ending with `.\r\n`. */
  readonly data: Buffer;
  /** The body has octets above 127: ask for BODY=8BITMIME when offered. */
  readonly eightBit: boolean;
  /** An address is not ASCII: ask for SMTPUTF8 when offered. */
  readonly utf8: boolean;
  readonly timeoutMs?: number;
}

export interface Reply {
  readonly code: number;
  readonly text: string;
}

export type SubmitResult =
  | { readonly ok: true; readonly reply: Reply }
  | { readonly ok: false; readonly stage: string; readonly reply: Reply };

export async function submit(req: SubmitRequest): Promise<SubmitResult> {
  let conn: ReplyConnection;
  try {
    conn = await ReplyConnection.open(req.host, req.port, req.timeoutMs ?? 60_000);
  } catch (err) {
    return { ok: false, stage: 'connect', reply: { code: 0, text: `cannot connect to ${req.host}:${req.port}: ${err instanceof Error ? err.message : String(err)}` } };
  }
  try {
    const step = async (stage: string, line: string | undefined, want: number): Promise<Reply | SubmitResult> => {
      const reply = await conn.exchange(line);
      return reply.code === want ? reply : { ok: false, stage, reply };
    };
    const isReply = (r: Reply | SubmitResult): r is Reply => 'code' in r;
    const greeting = await step('greeting', undefined, 220);
    if (!isReply(greeting)) return greeting;
    const ehlo = await step('EHLO', `EHLO ${req.helo}`, 250);
    if (!isReply(ehlo)) return ehlo;
    const offered = new Set(ehlo.text.split('\n').slice(1).map((l) => (l.split(' ')[0] ?? '').toUpperCase()));
    const params = [
      ...(req.eightBit && offered.has('8BITMIME') ? [' BODY=8BITMIME'] : []),
      ...(req.utf8 && offered.has('SMTPUTF8') ? [' SMTPUTF8'] : []),
    ].join('');
    const mail = await step('MAIL FROM', `MAIL FROM:<${req.sender}>${params}`, 250);
    if (!isReply(mail)) return mail;
    for (const rcpt of req.recipients) {
      const r = await conn.exchange(`RCPT TO:<${rcpt}>`);
      // 250 or 251 (will forward): both accept the recipient.
      if (r.code !== 250 && r.code !== 251) return { ok: false, stage: `RCPT TO:<${rcpt}>`, reply: r };
    }
    const data = await step('DATA', 'DATA', 354);
    if (!isReply(data)) return data;
    const done = await conn.exchangeRaw(req.data);
    if (done.code !== 250) return { ok: false, stage: 'end of data', reply: done };
    await conn.exchange('QUIT').catch(() => undefined);
    return { ok: true, reply: done };
  } catch (err) {
    return { ok: false, stage: 'connection', reply: { code: 0, text: err instanceof Error ? err.message : String(err) } };
  } finally {
    conn.close();
  }
}

/** A socket that answers each written command with the next whole reply. */
class ReplyConnection {
  #buffer = '';
  #lines: string[] = [];
  #waiter: (() => void) | undefined;
  #ended: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer += chunk.toString('utf8');
      let nl = this.#buffer.indexOf('\n');
      while (nl >= 0) {
        this.#lines.push(this.#buffer.slice(0, nl).replace(/\r$/, ''));
        this.#buffer = this.#buffer.slice(nl + 1);
        nl = this.#buffer.indexOf('\n');
      }
      this.#wake();
    });
    socket.on('close', () => {
      this.#ended ??= new Error('the server closed the connection');
      this.#wake();
    });
    socket.on('error', (err) => {
      this.#ended = err;
      this.#wake();
    });
  }

  static open(host: string, port: number, timeoutMs: number): Promise<ReplyConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, timeout: timeoutMs });
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new ReplyConnection(socket, timeoutMs));
      });
      socket.once('timeout', () => socket.destroy(new Error(`no connection after ${timeoutMs} ms`)));
      socket.once('error', reject);
    });
  }

  exchange(line: string | undefined): Promise<Reply> {
    if (line !== undefined) this.socket.write(`${line}\r\n`);
    return this.#reply();
  }

  exchangeRaw(data: Buffer): Promise<Reply> {
    this.socket.write(data);
    return this.#reply();
  }

  close(): void {
    this.socket.destroy();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  async #reply(): Promise<Reply> {
    const deadline = Date.now() + this.timeoutMs;
    const texts: string[] = [];
    for (;;) {
      const line = this.#lines.shift();
      if (line === undefined) {
        if (this.#ended) throw this.#ended;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no reply after ${this.timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          this.#waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        continue;
      }
      const m = /^(\d{3})([ -])(.*)$/.exec(line) ?? /^(\d{3})()$/.exec(line);
      if (m === null) throw new Error(`not an SMTP reply: ${JSON.stringify(line.slice(0, 80))}`);
      texts.push(m[3] ?? '');
      if (m[2] !== '-') return { code: Number(m[1]), text: texts.join('\n') };
    }
  }
}
