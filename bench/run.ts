/**
 * `npm run bench -- accept [--messages N] [--clients C] [--size BYTES] [--runs R] [--reuse]`
 * `npm run bench -- relay  [--messages N] [--clients C] [--size BYTES] [--runs R]`
 *
 * The accept benchmark: starts the real `postwire serve` on a fresh spool (durable: every 250
 * waits for the group-committed flush), injects N messages of a given size from C concurrent
 * clients, and reports messages/s, the latency of the 250 after end-of-data (p50/p99), the
 * relay's CPU seconds per 1,000 messages (from /proc) and its peak RSS (VmHWM). Several runs;
 * the table shows medians with the min–max spread. Loopback only, port 0.
 *
 * By default every message uses a new connection (as the Postfix comparison in the benchmark
 * issue does); --reuse sends all of a client's messages over one connection.
 *
 * The relay benchmark proves the end-to-end figure: the same injection into `postwire serve
 * --delivery on --smarthost` a counting sink in this process, timed from the first connect to
 * the last message's end-of-data at the sink; the relay's CPU is counted over that whole span (it
 * accepts and delivers). A baseline row sends the same load straight into the sink: the ceiling
 * of this harness on this machine.
 */
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RawClient } from '../test/support/raw-client.js';
import { startServe } from '../test/support/process.js';

interface RunResult {
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuPer1000: number;
  readonly peakRssMiB: number;
}

interface RelayRunResult extends RunResult {
  /** Injection rate: first connect to the last 250. */
  readonly injectRate: number;
  /** End-to-end rate: first connect to the last message's end-of-data at the sink. */
  readonly e2eRate: number;
  /** CPU seconds of this process (clients + sink) per 1,000 messages: the harness's own share. */
  readonly harnessCpuPer1000: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    messages: { type: 'string', default: '5000' },
    clients: { type: 'string', default: '20' },
    size: { type: 'string', default: '10240' },
    runs: { type: 'string', default: '3' },
    reuse: { type: 'boolean', default: false },
    profile: { type: 'string' },
  },
});

/** `--profile DIR`: the relay runs with --cpu-prof and writes its profile there on exit. */
function profileArgs(): string[] {
  return values.profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${values.profile}`];
}

function messageOf(size: number, n: number): Buffer {
  const head = `From: bench@load.test\r\nTo: sink@dest.test\r\nSubject: bench ${n}\r\n\r\n`;
  const line = 'The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n';
  let body = head;
  while (body.length + line.length <= size) body += line;
  body += 'x'.repeat(Math.max(0, size - body.length - 2)) + '\r\n';
  return Buffer.from(`${body}.\r\n`);
}

async function procStat(pid: number): Promise<{ cpuSeconds: number; peakRssKiB: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(stat[11]) + Number(stat[12]);
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuSeconds: ticks / 100, peakRssKiB: hwm };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

interface Injection {
  /** Sorted latencies of the 250 after end-of-data, ms. */
  readonly latencies: number[];
  readonly started: bigint;
  readonly finished: bigint;
}

/** N messages from C concurrent clients into `port`: MAIL, RCPT, DATA pipelined, then the body. */
async function inject(port: number, total: number, clients: number, size: number, reuse: boolean): Promise<Injection> {
  const latencies: number[] = [];
  let next = 0;
  const started = process.hrtime.bigint();
  const send = async (c: RawClient, n: number): Promise<void> => {
    await c.write(`MAIL FROM:<bench@load.test>\r\nRCPT TO:<sink${n}@dest.test>\r\nDATA\r\n`);
    const replies = await c.replies_(3);
    if (replies[2]?.code !== 354) throw new Error(`unexpected ${JSON.stringify(replies)}`);
    const t0 = process.hrtime.bigint();
    await c.write(messageOf(size, n));
    const done = await c.reply();
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (done.code !== 250) throw new Error(`message ${n}: ${done.code} ${done.text}`);
  };
  await Promise.all(
    Array.from({ length: clients }, async () => {
      let c: RawClient | undefined;
      while (next < total) {
        const n = next++;
        if (!c) {
          c = await RawClient.connect(port);
          await c.reply();
          await c.command('EHLO load.test');
        }
        await send(c, n);
        if (!reuse) {
          await c.command('QUIT');
          c.close();
          c = undefined;
        }
      }
      if (c) {
        await c.command('QUIT');
        c.close();
      }
    }),
  );
  const finished = process.hrtime.bigint();
  latencies.sort((a, b) => a - b);
  return { latencies, started, finished };
}

async function oneRun(total: number, clients: number, size: number, reuse: boolean): Promise<RunResult> {
  const spool = await mkdtemp(join(tmpdir(), 'postwire-bench-'));
  const relay = await startServe(['--spool', spool, '--log-level', 'warn', '--max-message-size', String(Math.max(size * 2, 50 * 1024 * 1024))], { nodeArgs: profileArgs() });
  const pid = relay.child.pid as number;
  try {
    const before = await procStat(pid);
    const { latencies, started, finished } = await inject(relay.port, total, clients, size, reuse);
    const seconds = Number(finished - started) / 1e9;
    const after = await procStat(pid);
    return {
      rate: total / seconds,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      cpuPer1000: ((after.cpuSeconds - before.cpuSeconds) / total) * 1000,
      peakRssMiB: after.peakRssKiB / 1024,
    };
  } finally {
    relay.kill('SIGTERM');
    await relay.exited;
    await rm(spool, { recursive: true, force: true });
  }
}

/**
 * A lean SMTP sink for the relay benchmark: PIPELINING, 250 to everything, DATA bodies scanned
 * for the terminator and counted, never stored (the test fake keeps every transaction and
 * re-concatenates its buffer per chunk: right for tests, not for measuring the relay).
 */
interface CountingSink {
  readonly port: number;
  /** Messages whose end-of-data got a 250. */
  readonly count: number;
  readonly bytes: number;
  /** hrtime of the last end-of-data. */
  readonly lastAt: bigint;
  close(): Promise<void>;
}

const TERMINATOR = Buffer.from('\r\n.\r\n');

async function startCountingSink(): Promise<CountingSink> {
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
        if (verb === 'EHLO') out += '250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n';
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

async function untilDelivered(sink: CountingSink, total: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (sink.count < total) {
    if (Date.now() > deadline) throw new Error(`only ${sink.count} of ${total} messages reached the sink within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function relayRun(total: number, clients: number, size: number): Promise<RelayRunResult> {
  const sink = await startCountingSink();
  const spool = await mkdtemp(join(tmpdir(), 'postwire-bench-'));
  const relay = await startServe([
    '--spool', spool,
    '--delivery', 'on',
    '--smarthost', `127.0.0.1:${sink.port}`,
    '--log-level', 'warn',
    '--max-message-size', String(Math.max(size * 2, 50 * 1024 * 1024)),
  ], { nodeArgs: profileArgs() });
  const pid = relay.child.pid as number;
  try {
    const before = await procStat(pid);
    const harnessBefore = process.cpuUsage();
    const { latencies, started, finished } = await inject(relay.port, total, clients, size, false);
    await untilDelivered(sink, total, 600_000);
    const after = await procStat(pid);
    const harness = process.cpuUsage(harnessBefore);
    if (sink.count !== total) throw new Error(`the sink got ${sink.count} messages, ${total} were sent`);
    return {
      rate: total / (Number(finished - started) / 1e9),
      injectRate: total / (Number(finished - started) / 1e9),
      e2eRate: total / (Number(sink.lastAt - started) / 1e9),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      cpuPer1000: ((after.cpuSeconds - before.cpuSeconds) / total) * 1000,
      harnessCpuPer1000: ((harness.user + harness.system) / 1e6 / total) * 1000,
      peakRssMiB: after.peakRssKiB / 1024,
    };
  } finally {
    relay.kill('SIGTERM');
    await relay.exited;
    await rm(spool, { recursive: true, force: true });
    await sink.close();
  }
}

/** The same clients straight into the sink: what this harness can do at all. */
async function baselineRun(total: number, clients: number, size: number): Promise<RelayRunResult> {
  const sink = await startCountingSink();
  try {
    const harnessBefore = process.cpuUsage();
    const { latencies, started, finished } = await inject(sink.port, total, clients, size, false);
    const harness = process.cpuUsage(harnessBefore);
    if (sink.count !== total) throw new Error(`the sink got ${sink.count} messages, ${total} were sent`);
    const rate = total / (Number(finished - started) / 1e9);
    return {
      rate,
      injectRate: rate,
      e2eRate: total / (Number(sink.lastAt - started) / 1e9),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      cpuPer1000: NaN,
      harnessCpuPer1000: ((harness.user + harness.system) / 1e6 / total) * 1000,
      peakRssMiB: NaN,
    };
  } finally {
    await sink.close();
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function cell(xs: readonly number[], digits: number): string {
  if (xs.some((x) => Number.isNaN(x))) return '—';
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

async function acceptBench(total: number, clients: number, size: number, runs: number, reuse: boolean): Promise<void> {
  const results: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await oneRun(total, clients, size, reuse);
    results.push(r);
    console.error(`run ${i + 1}/${runs}: ${r.rate.toFixed(0)} msg/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.cpuPer1000.toFixed(2)} CPU-s/1000, peak RSS ${r.peakRssMiB.toFixed(1)} MiB`);
  }
  console.log(`\naccept: ${total} × ${size} B from ${clients} clients, ${reuse ? 'connections reused' : 'new connection per message'}, ${runs} runs, median (min–max)`);
  console.log('| target | accepted msg/s | 250 latency p50 ms | p99 ms | relay CPU s / 1000 msg | peak RSS MiB |');
  console.log('|---|---|---|---|---|---|');
  console.log(
    `| postwire | ${cell(results.map((r) => r.rate), 0)} | ${cell(results.map((r) => r.p50), 2)} | ${cell(results.map((r) => r.p99), 2)} | ${cell(results.map((r) => r.cpuPer1000), 2)} | ${cell(results.map((r) => r.peakRssMiB), 1)} |`,
  );
}

async function relayBench(total: number, clients: number, size: number, runs: number): Promise<void> {
  const relay: RelayRunResult[] = [];
  const baseline: RelayRunResult[] = [];
  const show = (what: string, i: number, r: RelayRunResult): void =>
    console.error(
      `${what} run ${i + 1}/${runs}: end-to-end ${r.e2eRate.toFixed(0)} msg/s, injected ${r.injectRate.toFixed(0)} msg/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ` +
        `relay ${r.cpuPer1000.toFixed(2)} CPU-s/1000, harness ${r.harnessCpuPer1000.toFixed(2)} CPU-s/1000, peak RSS ${r.peakRssMiB.toFixed(1)} MiB`,
    );
  for (let i = 0; i < runs; i++) {
    const b = await baselineRun(total, clients, size);
    baseline.push(b);
    show('baseline', i, b);
    const r = await relayRun(total, clients, size);
    relay.push(r);
    show('relay', i, r);
  }
  console.log(`\nrelay: ${total} × ${size} B from ${clients} clients, new connection per message, to a counting sink on loopback, ${runs} runs, median (min–max)`);
  console.log('| target | end-to-end msg/s | injected msg/s | 250 latency p50 ms | p99 ms | relay CPU s / 1000 msg | harness CPU s / 1000 msg | peak RSS MiB |');
  console.log('|---|---|---|---|---|---|---|---|');
  const row = (name: string, rs: readonly RelayRunResult[]): string =>
    `| ${name} | ${cell(rs.map((r) => r.e2eRate), 0)} | ${cell(rs.map((r) => r.injectRate), 0)} | ${cell(rs.map((r) => r.p50), 2)} | ${cell(rs.map((r) => r.p99), 2)} | ${cell(rs.map((r) => r.cpuPer1000), 2)} | ${cell(rs.map((r) => r.harnessCpuPer1000), 2)} | ${cell(rs.map((r) => r.peakRssMiB), 1)} |`;
  console.log(row('postwire → sink', relay));
  console.log(row('baseline: clients → sink', baseline));
}

async function main(): Promise<void> {
  const which = positionals[0] ?? 'accept';
  const total = Number(values.messages);
  const clients = Number(values.clients);
  const size = Number(values.size);
  const runs = Number(values.runs);
  if (which === 'accept') await acceptBench(total, clients, size, runs, values.reuse === true);
  else if (which === 'relay') {
    if (values.reuse) throw new Error('relay: --reuse is not supported (every message uses a new connection)');
    await relayBench(total, clients, size, runs);
  } else throw new Error(`unknown benchmark "${which}" (available: accept, relay)`);
}

main().catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
