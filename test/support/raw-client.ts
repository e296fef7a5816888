/**
 * A byte-exact SMTP client for tests: it writes exactly the bytes it is given (in the
 * segmentation it is given) and parses replies with its own small reader, independent of the
 * codec under test, so a codec bug cannot hide itself.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';

export interface TestReply {
  readonly code: number;
  readonly lines: string[];
  readonly text: string;
}

export class RawClient {
  private buffer = '';
  private replies: TestReply[] = [];
  private waiters: Array<() => void> = [];
  private pending: string[] = [];
  closed = false;

  private constructor(public socket: Socket) {
    this.bind(socket);
  }

  private bind(socket: Socket): void {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** Implicit TLS (the submission port): the handshake first, verifying with `options` (ca, servername). */
  static connectTls(port: number, options: ConnectionOptions, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ port, host, ...options }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /**
   * STARTTLS's second half: the handshake over this connection, verifying with `options`.
   * Bytes the server sends after this point are read only through TLS; replies still unread
   * stay queued. Rejects when the handshake fails (certificate refused, server closed).
   */
  startTls(options: ConnectionOptions): Promise<TLSSocket> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    return new Promise((resolve, reject) => {
      const secure = tlsConnect({ socket: plain, ...options }, () => {
        secure.off('error', reject);
        resolve(secure);
      });
      secure.once('error', reject);
      this.socket = secure;
      this.bind(secure);
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Write bytes as one segment (one write call, no Nagle). */
  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /** Write each segment separately, waiting a tick between them so they leave as separate packets. */
  async writeSegments(segments: readonly Uint8Array[]): Promise<void> {
    for (const s of segments) {
      await this.write(s);
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Send a command line (CRLF added) and await its reply. */
  async command(line: string): Promise<TestReply> {
    await this.write(`${line}\r\n`);
    return this.reply();
  }

  /** The next reply, or rejects after `ms` (default 10 s) or when the connection closed first. */
  async reply(ms = 10_000): Promise<TestReply> {
    const deadline = Date.now() + ms;
    while (this.replies.length === 0) {
      if (this.closed) throw new Error(`connection closed; unparsed: ${JSON.stringify(this.buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${ms} ms; unparsed: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.replies.shift() as TestReply;
  }

  async replies_(n: number): Promise<TestReply[]> {
    const out: TestReply[] = [];
    for (let i = 0; i < n; i++) out.push(await this.reply());
    return out;
  }

  /** Resolves when the server closed the connection. */
  async waitClosed(ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer += chunk.toString('latin1');
    for (let i = this.buffer.indexOf('\r\n'); i >= 0; i = this.buffer.indexOf('\r\n')) {
      const line = this.buffer.slice(0, i);
      this.buffer = this.buffer.slice(i + 2);
      const m = /^(\d{3})([ -])(.*)$/.exec(line);
      if (!m) throw new Error(`bad reply line ${JSON.stringify(line)}`);
      this.pending.push(m[3] ?? '');
      if (m[2] === ' ') {
        const lines = this.pending;
        this.pending = [];
        this.replies.push({ code: Number(m[1]), lines, text: lines.join('\n') });
      }
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
