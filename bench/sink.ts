/**
 * @module bench/sink
 * The counting sink of the relay benchmarks: what every target delivers to.
 */
import { createServer } from 'node:net';
import type { Socket } from 'node:net';

/**
 * A lean SMTP sink for the relay benchmark: PIPELINING, 250 to everything, DATA bodies scanned
 * for the terminator and counted, never stored (the test fake keeps every transaction and
 * re-concatenates its buffer per chunk: right for tests, not for measuring the relay).
 */
export interface CountingSink {
  readonly port: number;
  /** Messages whose end-of-data got a 250. */
  readonly count: number;
  readonly bytes: number;
  /** hrtime of the last end-of-data. */
  readonly lastAt: bigint;
  close(): Promise<void>;
}

const TERMINATOR = Buffer.from('\r\n.\r\n');

export async function startCountingSink(): Promise<CountingSink> {
  const sockets = new Set<Socket>();
  const state = { count: 0, bytes: 0, lastAt: 0n };
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer: Buffer = Buffer.alloc(0);
    let inData = false;
    let tail: Buffer = Buffer.from('\r\n');
    socket.write('220 sink.bench ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      let out = '';
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      for (;;) {
        if (inData) {
          // The terminator may straddle chunks: first look across the edge (the last 4 bytes seen
          // and the first 4 of this buffer; any match there ends inside this buffer), then inside.
          const edge = Buffer.concat([tail, buffer.subarray(0, 4)]).indexOf(TERMINATOR);
          const inside = edge >= 0 ? -1 : buffer.indexOf(TERMINATOR);
          const end = edge >= 0 ? edge + TERMINATOR.length - tail.length : inside >= 0 ? inside + TERMINATOR.length : -1;
          if (end < 0) {
            state.bytes += buffer.length;
            tail = buffer.length >= 4 ? Buffer.from(buffer.subarray(-4)) : Buffer.concat([tail, buffer]).subarray(-4);
            buffer = Buffer.alloc(0);
            break;
          }
          state.bytes += end;
          buffer = buffer.subarray(end);
          inData = false;
          state.count++;
          state.lastAt = process.hrtime.bigint();
          out += '250 2.0.0 ok\r\n';
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) break;
        const verb = buffer.subarray(0, Math.min(eol, 4)).toString('latin1').toUpperCase();
        buffer = buffer.subarray(eol + 2);
        if (verb === 'EHLO') out += '250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1073741824\r\n';
        else if (verb === 'DATA') {
          out += '354 go ahead\r\n';
          inData = true;
          tail = Buffer.from('\r\n');
        } else if (verb === 'QUIT') {
          socket.end(`${out}221 bye\r\n`);
          return;
        } else out += '250 ok\r\n';
      }
      if (out) socket.write(out);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    get count() {
      return state.count;
    },
    get bytes() {
      return state.bytes;
    },
    get lastAt() {
      return state.lastAt;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

