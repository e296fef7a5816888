/**
 * Helpers for the delivery tests (src/delivery/*.test.ts): jobs whose body is served from memory
 * in awkward chunk sizes, hand-built routes pointing at sinks on port 0, raw peers that misbehave
 * before any SMTP is spoken, a closed port, and a recording proxy that shows the client's bytes.
 */
import { Buffer } from 'node:buffer';
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { DeliveryJob } from '../../src/delivery/connection.js';
import type { RouteSuccess } from '../../src/delivery/route.js';

/** Serves `body` in chunks cycling through `sizes` (edges land mid-line, mid-CRLF, before dots). */
export async function* chunked(body: Buffer, sizes: readonly number[] = [65_536]): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (let i = 0; at < body.length; i++) {
    const n = sizes[i % sizes.length] ?? 65_536;
    yield body.subarray(at, at + n);
    at += n;
  }
}

let counter = 0;

export function makeJob(body: Buffer, recipients: readonly string[], extra: Partial<DeliveryJob> & { sizes?: readonly number[] } = {}): DeliveryJob {
  const { sizes, ...rest } = extra;
  return {
    messageId: `m${++counter}`,
    sender: 'alice@src.test',
    body: '8BITMIME',
    smtputf8: false,
    recipients: recipients.map((address) => ({ address })),
    size: body.length,
    openBody: () => chunked(body, sizes),
    ...rest,
  };
}

export function makeRoute(...ports: number[]): RouteSuccess {
  return {
    ok: true,
    destination: 'mx:dst.test',
    hosts: ports.map((port, i) => ({ name: `mx${i + 1}.test`, address: '127.0.0.1', port, preference: 10 * (i + 1) })),
    route: { pattern: '*', nextHop: { kind: 'mx' }, origin: 'default' },
    explain: [],
  };
}

/** A short message with dots where they hurt most. */
export function smallBody(tag = 'x'): Buffer {
  return Buffer.from(`Subject: ${tag}\r\n\r\n.\r\n..\r\n.x\r\nplain\r\n`, 'latin1');
}

/** About `bytes` octets of lines, most starting with a dot, CRLF only, deterministic. */
export function dotHeavyBody(bytes: number): Buffer {
  const pattern = ['.', '..', '.x', '...dots', 'a plain line of text', '', '.\t.', 'x'.repeat(200), '.' + 'y'.repeat(990)];
  const block: string[] = ['Subject: dot heavy', ''];
  let n = 0;
  for (let i = 0; n < 1_048_576; i++) {
    const line = `${pattern[i % pattern.length]}${i % 7 === 0 ? String(i) : ''}`;
    block.push(line);
    n += line.length + 2;
  }
  const one = Buffer.from(block.join('\r\n') + '\r\n', 'latin1');
  const parts: Buffer[] = [];
  for (let total = 0; total < bytes; total += one.length) parts.push(one);
  const all = Buffer.concat(parts);
  return all.subarray(0, lastLineEnd(all, bytes));
}

function lastLineEnd(buf: Buffer, max: number): number {
  const at = buf.lastIndexOf('\r\n', max - 2);
  return at < 0 ? 0 : at + 2;
}

/** A listening server; `handler` gets each socket. */
export async function rawServer(handler: (socket: Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    handler(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on: bound, then closed. */
export async function closedPort(...inUse: number[]): Promise<number> {
  // The kernel may hand a just-closed port to the next bind(0): a test's own listeners are
  // passed in, so the "dead" host is never one of them.
  for (;;) {
    const s = await rawServer(() => undefined);
    await s.close();
    if (!inUse.includes(s.port)) return s.port;
  }
}

/** A TCP proxy to `target` recording every byte the client sent, per connection. */
export async function recordingProxy(
  target: number,
): Promise<{ port: number; sent: () => string; connections: number; perConnection: () => Buffer[][]; close(): Promise<void> }> {
  const chunks: Buffer[] = [];
  /** Each connection's client bytes, one Buffer per 'data' event (a packet boundary, on loopback). */
  const byConnection: Buffer[][] = [];
  let connections = 0;
  const server = await rawServer((client) => {
    connections++;
    const mine: Buffer[] = [];
    byConnection.push(mine);
    const upstream = createConnection({ host: '127.0.0.1', port: target });
    upstream.on('error', () => client.destroy());
    client.on('data', (d: Buffer) => {
      chunks.push(d);
      mine.push(d);
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  return {
    port: server.port,
    sent: () => Buffer.concat(chunks).toString('latin1'),
    perConnection: () => byConnection.map((c) => [...c]),
    get connections() {
      return connections;
    },
    close: server.close,
  };
}

export function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

export function waitFor(predicate: () => boolean, timeoutMs = 2_000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (predicate()) resolve();
      else if (Date.now() - start > timeoutMs) reject(new Error('waitFor timed out'));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

/** How a mortalPeer leaves instead of answering: a bare FIN, or `421 4.4.2 idle timeout` and a FIN. */
export type PeerDeath = 'fin' | '421';

export interface MortalPeerConnection {
  /** Every byte the client sent on this connection. */
  received: string;
  /** Messages this connection took (end-of-data answered 250). */
  transactions: number;
}

/**
 * A peer speaking just enough SMTP (EHLO with PIPELINING, MAIL, RCPT, DATA, RSET, QUIT: all
 * accepted) that, before answering a command line, asks `dies(connection, line)` whether to
 * close instead: so a test can make a pooled connection die exactly when it is reused. It keeps,
 * per connection, what the client sent, and every message it took (dot-stuffed, as received).
 */
export async function mortalPeer(
  dies: (connection: Readonly<MortalPeerConnection>, line: string) => PeerDeath | undefined,
): Promise<{ port: number; connections: MortalPeerConnection[]; messages: string[]; close(): Promise<void> }> {
  const connections: MortalPeerConnection[] = [];
  const messages: string[] = [];
  const server = await rawServer((s) => {
    const me: MortalPeerConnection = { received: '', transactions: 0 };
    connections.push(me);
    s.write('220 peer.test ESMTP\r\n');
    let buf = '';
    let inData = false;
    s.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      me.received += text;
      buf += text;
      while (!s.writableEnded && !s.destroyed) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          messages.push(buf.slice(2, end + 2));
          buf = buf.slice(end + 5);
          inData = false;
          me.transactions++;
          s.write('250 2.0.0 ok\r\n');
          continue;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.slice(0, eol);
        buf = buf.slice(eol + 2);
        const death = dies(me, line);
        if (death !== undefined) {
          if (death === '421') s.end('421 4.4.2 peer.test idle timeout\r\n');
          else s.end();
          return;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') s.write('250-peer.test\r\n250 PIPELINING\r\n');
        else if (verb === 'DATA') {
          s.write('354 go ahead\r\n');
          buf = '\r\n' + buf; // the body's first line may be '.': match CRLF.CRLF from here
          inData = true;
        } else if (verb === 'QUIT') s.end('221 2.0.0 bye\r\n');
        else s.write('250 2.0.0 ok\r\n');
      }
    });
  });
  return { port: server.port, connections, messages, close: server.close };
}
