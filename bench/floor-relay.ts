/**
 * @module bench/floor-relay
 * Not a relay: the floor under one. The relay benchmark's dialogue and nothing else, on one
 * Node event loop, so `npm run bench -- relay --targets floor` can show what the sockets alone
 * cost before any SMTP machine, queue, fsync, policy or log runs. Inbound it answers 220, EHLO,
 * MAIL, RCPT, DATA (replies of one read in one write, as Postwire's outbox does), finds the
 * terminator with Buffer.indexOf, answers 250 at once (no durability at all) and hands the
 * wire bytes, still dot-stuffed, to a pool of sink connections that pipeline MAIL/RCPT/DATA in
 * one write and the body with its terminator in a second (no RSET, no un-stuffing or
 * re-stuffing). `node dist/bench/floor-relay.js SINK_PORT` prints `listening PORT`.
 * It trusts its clients completely: the benchmark's own load generator and sink.
 */
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';

const sinkPort = Number(process.argv[2]);
const TERMINATOR = Buffer.from('\r\n.\r\n');

interface Message {
  readonly from: string;
  readonly to: string;
  readonly wire: Buffer;
}

/** One pipelined sink connection: a message at a time, two writes each. */
class Outbound {
  #buffer = '';
  #finals = 0;
  #wanted = 0;
  #then: (() => void) | undefined;
  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => undefined);
  }

  /** Resolves after the next `n` final reply lines. */
  replies(n: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wanted = n;
      this.#then = resolve;
      this.#check();
    });
  }

  #onData(chunk: Buffer): void {
    this.#buffer += chunk.toString('latin1');
    let eol: number;
    while ((eol = this.#buffer.indexOf('\r\n')) >= 0) {
      if (this.#buffer[3] !== '-') this.#finals++;
      this.#buffer = this.#buffer.slice(eol + 2);
    }
    this.#check();
  }

  #check(): void {
    if (this.#then === undefined || this.#finals < this.#wanted) return;
    this.#finals -= this.#wanted;
    const then = this.#then;
    this.#then = undefined;
    then();
  }
}

const idle: Outbound[] = [];
const queue: Message[] = [];
let open = 0;
const MAX_OUTBOUND = 20;

async function opened(): Promise<Outbound> {
  const socket = connect(sinkPort, '127.0.0.1');
  const out = new Outbound(socket);
  await out.replies(1);
  socket.write('EHLO floor.bench\r\n');
  await out.replies(1);
  return out;
}

async function worker(): Promise<void> {
  const out = idle.pop() ?? (await opened());
  for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
    out.socket.write(`MAIL FROM:<${m.from}>\r\nRCPT TO:<${m.to}>\r\nDATA\r\n`);
    await out.replies(3);
    out.socket.write(m.wire);
    await out.replies(1);
  }
  idle.push(out);
  open--;
}

function deliver(message: Message): void {
  queue.push(message);
  if (open >= MAX_OUTBOUND) return;
  open++;
  void worker();
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  let pending: Buffer = Buffer.alloc(0);
  let data: Buffer[] | undefined;
  let tail: Buffer = Buffer.alloc(0);
  let from = '';
  let to = '';
  socket.write('220 floor.bench ESMTP\r\n');
  socket.on('data', (chunk: Buffer) => {
    let out = '';
    let input = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    pending = Buffer.alloc(0);
    for (;;) {
      if (data !== undefined) {
        // The terminator may straddle reads: look across the edge (the last 4 bytes held and the
        // first 4 of this read), then inside this read; what is held is joined once, at the end.
        const edge = Buffer.concat([tail, input.subarray(0, 4)]).indexOf(TERMINATOR);
        const end = edge >= 0 ? edge + TERMINATOR.length - tail.length : (() => {
          const inside = input.indexOf(TERMINATOR);
          return inside < 0 ? -1 : inside + TERMINATOR.length;
        })();
        if (end < 0) {
          data.push(input);
          tail = Buffer.from(Buffer.concat([tail, input]).subarray(-4));
          break;
        }
        data.push(input.subarray(0, end));
        deliver({ from, to, wire: data.length === 1 ? (data[0] as Buffer) : Buffer.concat(data) });
        input = input.subarray(end);
        data = undefined;
        out += '250 2.0.0 queued\r\n';
        continue;
      }
      const eol = input.indexOf('\r\n');
      if (eol < 0) {
        pending = input;
        break;
      }
      const line = input.subarray(0, eol).toString('latin1');
      input = input.subarray(eol + 2);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') out += '250-floor.bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n';
      else if (verb === 'MAIL') {
        from = line.slice(line.indexOf('<') + 1, line.lastIndexOf('>'));
        out += '250 2.1.0 ok\r\n';
      } else if (verb === 'RCPT') {
        to = line.slice(line.indexOf('<') + 1, line.lastIndexOf('>'));
        out += '250 2.1.5 ok\r\n';
      } else if (verb === 'DATA') {
        out += '354 go ahead\r\n';
        data = [];
        // DATA's own CRLF: a body of just "." ends at once.
        tail = Buffer.from('\r\n');
      } else if (verb === 'QUIT') {
        socket.end(`${out}221 2.0.0 bye\r\n`);
        return;
      } else out += '250 ok\r\n';
    }
    if (out !== '') socket.write(out);
  });
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`);
});
process.on('SIGTERM', () => process.exit(0));
