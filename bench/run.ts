/**
 * `npm run bench -- <case> [options]` (docs/benchmarks.md):
 *   relay  [--messages N] [--clients C] [--size BYTES] [--runs R] [--targets postwire,postfix[,floor]]
 *          end to end through each target into a counting sink, side by side (Postfix when it
 *          can run here), plus a baseline row (the clients straight into the sink); `floor` adds
 *          bench/floor-relay, the dialogue's sockets on one event loop with no relay work at all
 *   big    [--size BYTES] [--runs R] [--targets …]   one large message: the relay's peak RSS
 *   codec  [--mib M] [--runs R]                      the wire codec alone, MB/s
 *   accept [--messages N] [--clients C] [--size BYTES] [--runs R] [--reuse]   Postwire's accept path only
 *   drain  [--messages N] [--size BYTES] [--runs R]   Postwire delivering a pre-filled queue for one
 *          destination (the backlog after an outage of the smart host), delivery only
 *   suite  [--runs R]    every case of the benchmark issue, one table each
 * Any case: --profile DIR runs Postwire under --cpu-prof and writes its profiles there.
 * relay and suite: --queue postgres://... [--nodes N] run Postwire on the shared PostgreSQL queue
 *   (a fresh schema per run) with N nodes, the clients spread round-robin over them; the table
 *   then adds the database backends' CPU (docs/queue.md has the figures).
 *
 * Method: each run starts every target fresh (a new spool or queue directory), on loopback
 * (port 0 for Postwire and the sink; a free port for Postfix), relaying to a sink in this process
 * (bench/sink.ts). A short warm-up (a tenth of N, at most 200 messages) goes through first and is
 * not counted, so neither Postfix's process spawning nor V8's compilation is timed. Then N
 * messages from C concurrent clients, a new connection per message (MAIL, RCPT, DATA pipelined,
 * the body, the 250, QUIT), and the run waits until the sink has counted every one. Targets
 * take turns within each run, so a noisy minute hurts all of them alike. Reported: medians with
 * the min–max spread; ratios are of medians. CPU is the whole process tree of the target (bench/
 * proc.ts), so Postfix's forked daemons count. All figures share the machine with the load
 * generator and the sink.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RawClient } from '../test/support/raw-client.js';
import { startServe } from '../test/support/process.js';
import { codecRun, dotCorpus } from './codec.js';
import type { CodecResult } from './codec.js';
import { sampleTree } from './proc.js';
import { startCountingSink } from './sink.js';
import type { CountingSink } from './sink.js';
import { startTarget, targetUnavailable } from './targets.js';
import type { SharedQueue, TargetName } from './targets.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    messages: { type: 'string', default: '5000' },
    clients: { type: 'string', default: '20' },
    size: { type: 'string' },
    runs: { type: 'string', default: '3' },
    reuse: { type: 'boolean', default: false },
    targets: { type: 'string', default: 'postwire,postfix,floor' },
    mib: { type: 'string', default: '256' },
    profile: { type: 'string' },
    queue: { type: 'string' },
    nodes: { type: 'string', default: '1' },
  },
});

const KiB = 1024;
const MiB = 1024 * KiB;

/** `--profile DIR`: Postwire runs with --cpu-prof and writes its profile there on exit. */
function profileArgs(): string[] {
  return values.profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${values.profile}`];
}

const bodies = new Map<number, string>();
/** A message of about `size` bytes (+ terminator); the body text is built once per size. */
function messageOf(size: number, n: number): Buffer {
  const head = `From: bench@load.test\r\nTo: sink@dest.test\r\nSubject: bench ${n}\r\n\r\n`;
  let body = bodies.get(size);
  if (body === undefined) {
    const line = 'The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz\r\n';
    const room = Math.max(0, size - head.length);
    body = line.repeat(Math.floor(room / line.length));
    body += 'x'.repeat(Math.max(0, room - body.length - 2)) + '\r\n';
    bodies.set(size, body);
  }
  return Buffer.from(`${head}${body}.\r\n`);
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

/**
 * How long a client waits for the 220. A server with a process limit (Postfix: 100 smtpd by
 * default) leaves the rest of 200 clients in the listen queue, on a slow day for over 10 s;
 * RFC 5321 §4.5.3.2.1 gives the greeting 5 minutes.
 */
const GREETING_WAIT_MS = 120_000;

/** N messages from C concurrent clients into `port`: MAIL, RCPT, DATA pipelined, then the body. */
async function inject(port: number | readonly number[], total: number, clients: number, size: number, reuse: boolean, first = 0): Promise<Injection> {
  const ports = typeof port === 'number' ? [port] : port;
  const latencies: number[] = [];
  let next = 0;
  const started = process.hrtime.bigint();
  const send = async (c: RawClient, n: number): Promise<void> => {
    await c.write(`MAIL FROM:<bench@load.test>\r\nRCPT TO:<sink${n}@dest.test>\r\nDATA\r\n`);
    const replies = await c.replies_(3);
    if (replies[2]?.code !== 354) throw new Error(`unexpected ${JSON.stringify(replies)}`);
    const message = messageOf(size, n);
    const t0 = process.hrtime.bigint();
    await c.write(message);
    const done = await c.reply();
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (done.code !== 250) throw new Error(`message ${n}: ${done.code} ${done.text}`);
  };
  await Promise.all(
    Array.from({ length: Math.min(clients, total) }, async (_, lane) => {
      let c: RawClient | undefined;
      while (next < total) {
        const n = first + next++;
        if (!c) {
          c = await RawClient.connect(ports[lane % ports.length] as number);
          await c.reply(GREETING_WAIT_MS);
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

async function untilCounted(sink: CountingSink, total: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (sink.count < total) {
    if (Date.now() > deadline) throw new Error(`only ${sink.count} of ${total} messages reached the sink within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface RelayResult {
  /** First connect to the last message's end-of-data at the sink. */
  readonly e2eRate: number;
  /** First connect to the last 250. */
  readonly injectRate: number;
  readonly p50: number;
  readonly p99: number;
  /** The target's process tree, CPU seconds per 1,000 messages; NaN for the baseline. */
  readonly cpuPer1000: number;
  /** The largest peak RSS of any process of the target, MiB; NaN for the baseline. */
  readonly peakMiB: number;
  /** That process's peak minus its RSS before the measured messages, MiB. */
  readonly growthMiB: number;
  /** The shared queue's database backends, CPU seconds per 1,000 messages; NaN otherwise. */
  readonly dbCpuPer1000: number;
}

/** --queue URL --nodes N, when given: Postwire runs on the shared PostgreSQL queue. */
function sharedQueue(): SharedQueue | undefined {
  return values.queue === undefined ? undefined : { url: values.queue, nodes: positiveInt('nodes', values.nodes, 1) };
}

async function sampleAll(roots: readonly number[]): Promise<{ cpuSeconds: number; peakKiB: number; rssKiB: number }> {
  const samples = await Promise.all(roots.map(sampleTree));
  const biggest = samples.reduce((a, b) => (b.peakKiB > a.peakKiB ? b : a));
  return { cpuSeconds: samples.reduce((a, x) => a + x.cpuSeconds, 0), peakKiB: biggest.peakKiB, rssKiB: biggest.rssKiB };
}

type RowName = TargetName | 'baseline';

/** One target, fresh: warm-up, then N messages timed to the sink. */
async function relayRun(name: RowName, total: number, clients: number, size: number): Promise<RelayResult> {
  const sink = await startCountingSink();
  const maxSize = Math.max(size * 2, 50 * MiB);
  const target = name === 'baseline' ? undefined : await startTarget(name, sink.port, maxSize, profileArgs(), name === 'postwire' ? sharedQueue() : undefined);
  try {
    const port = target?.ports ?? sink.port;
    const warm = Math.min(200, Math.floor(total / 10));
    if (warm > 0) {
      await inject(port, warm, clients, size, false, 1_000_000);
      await untilCounted(sink, warm, 120_000);
    }
    const before = target ? await sampleAll(target.roots) : undefined;
    const dbBefore = target?.dbCpuSeconds ? await target.dbCpuSeconds() : NaN;
    const run = await inject(port, total, clients, size, false);
    await untilCounted(sink, warm + total, 900_000);
    const after = target ? await sampleAll(target.roots) : undefined;
    const dbAfter = target?.dbCpuSeconds ? await target.dbCpuSeconds() : NaN;
    if (sink.count !== warm + total) throw new Error(`${name}: the sink got ${sink.count - warm} messages, ${total} were sent`);
    return {
      e2eRate: total / (Number(sink.lastAt - run.started) / 1e9),
      injectRate: total / (Number(run.finished - run.started) / 1e9),
      p50: percentile(run.latencies, 50),
      p99: percentile(run.latencies, 99),
      cpuPer1000: before && after ? ((after.cpuSeconds - before.cpuSeconds) / total) * 1000 : NaN,
      peakMiB: after ? after.peakKiB / KiB : NaN,
      growthMiB: before && after ? (after.peakKiB - before.rssKiB) / KiB : NaN,
      dbCpuPer1000: ((dbAfter - dbBefore) / total) * 1000,
    };
  } finally {
    await target?.stop();
    await sink.close();
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function cell(xs: readonly number[], digits: number): string {
  if (xs.length === 0 || xs.some((x) => Number.isNaN(x))) return '—';
  if (xs.length === 1) return (xs[0] as number).toFixed(digits);
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

function ratio(a: readonly number[], b: readonly number[] | undefined): string {
  if (b === undefined || a.length === 0 || b.length === 0) return '—';
  const r = median(a) / median(b);
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '—';
}

/** The targets asked for that can run here; the others are named on stderr. */
function availableTargets(): TargetName[] {
  const asked = String(values.targets).split(',').map((t) => t.trim()).filter(Boolean);
  const out: TargetName[] = [];
  for (const t of asked) {
    if (t !== 'postwire' && t !== 'postfix' && t !== 'floor') throw new Error(`unknown target "${t}" (available: postwire, postfix, floor)`);
    const why = targetUnavailable(t);
    if (why === undefined) out.push(t);
    else console.error(`bench: ${t} skipped: ${why}`);
  }
  return out;
}

function rowLabel(name: RowName): string {
  if (name === 'baseline') return 'baseline: clients → sink';
  if (name === 'floor') return 'floor: the sockets alone, no relay work (bench/floor-relay) → sink';
  return `${name} → sink`;
}

async function relayCase(total: number, clients: number, size: number, runs: number, targets: readonly TargetName[]): Promise<string> {
  const rows: RowName[] = [...targets, 'baseline'];
  const results = new Map<RowName, RelayResult[]>(rows.map((r) => [r, []]));
  for (let i = 0; i < runs; i++) {
    for (const name of rows) {
      const r = await relayRun(name, total, clients, size);
      results.get(name)?.push(r);
      console.error(
        `${name} run ${i + 1}/${runs}: e2e ${r.e2eRate.toFixed(0)} msg/s, injected ${r.injectRate.toFixed(0)} msg/s, p50 ${r.p50.toFixed(2)} ms, ` +
          `p99 ${r.p99.toFixed(2)} ms, ${r.cpuPer1000.toFixed(2)} CPU-s/1000, peak RSS ${r.peakMiB.toFixed(1)} MiB`,
      );
    }
  }
  const postfix = results.get('postfix');
  const pf = postfix && postfix.length > 0 ? postfix : undefined;
  const shared = sharedQueue();
  const lines = [
    `relay: ${total} × ${formatSize(size)} from ${clients} clients, new connection per message, ${runs} runs, median (min–max)` +
      (shared ? `; postwire on the shared PostgreSQL queue, ${shared.nodes} node(s); database backends' CPU s / 1000 msg: ${cell((results.get('postwire') ?? []).map((r) => r.dbCpuPer1000), 2)}` : ''),
    '',
    '| target | end-to-end msg/s | × Postfix | injected msg/s | 250 p50 ms | 250 p99 ms | CPU s / 1000 msg | CPU ÷ Postfix | peak RSS MiB |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const name of rows) {
    const rs = results.get(name) ?? [];
    const e2e = rs.map((r) => r.e2eRate);
    const cpu = rs.map((r) => r.cpuPer1000);
    lines.push(
      `| ${rowLabel(name)} | ${cell(e2e, 0)} | ${name === 'postwire' || name === 'floor' ? ratio(e2e, pf?.map((r) => r.e2eRate)) : '—'} | ` +
        `${cell(rs.map((r) => r.injectRate), 0)} | ${cell(rs.map((r) => r.p50), 2)} | ${cell(rs.map((r) => r.p99), 2)} | ${cell(cpu, 2)} | ` +
        `${name === 'postwire' || name === 'floor' ? ratio(cpu, pf?.map((r) => r.cpuPer1000)) : '—'} | ${cell(rs.map((r) => r.peakMiB), 1)} |`,
    );
  }
  return lines.join('\n');
}

async function bigCase(size: number, runs: number, targets: readonly TargetName[]): Promise<string> {
  const results = new Map<TargetName, RelayResult[]>(targets.map((t) => [t, []]));
  for (let i = 0; i < runs; i++) {
    for (const name of targets) {
      const r = await relayRun(name, 1, 1, size);
      results.get(name)?.push(r);
      console.error(`${name} run ${i + 1}/${runs}: one ${formatSize(size)} message end to end in ${(1000 / r.e2eRate).toFixed(0)} ms, peak RSS ${r.peakMiB.toFixed(1)} MiB (+${r.growthMiB.toFixed(1)})`);
    }
  }
  const lines = [
    `big: one ${formatSize(size)} message end to end, ${runs} runs, median (min–max)`,
    '',
    '| target | end to end s | peak RSS MiB (largest process) | growth during the message MiB |',
    '|---|---|---|---|',
  ];
  for (const name of targets) {
    const rs = results.get(name) ?? [];
    lines.push(`| ${name} | ${cell(rs.map((r) => 1 / r.e2eRate), 2)} | ${cell(rs.map((r) => r.peakMiB), 1)} | ${cell(rs.map((r) => r.growthMiB), 1)} |`);
  }
  return lines.join('\n');
}

function codecCase(mib: number, runs: number): string {
  const corpus = dotCorpus(mib * MiB);
  const results: CodecResult[] = [];
  for (let i = 0; i < runs; i++) {
    const r = codecRun(corpus);
    results.push(r);
    console.error(`codec run ${i + 1}/${runs}: unstuff ${r.unstuff.toFixed(0)} (reference ${r.referenceUnstuff.toFixed(0)}) MB/s, stuff ${r.stuff.toFixed(0)} (reference ${r.referenceStuff.toFixed(0)}) MB/s, indexOf scan ${r.scan.toFixed(0)} MB/s`);
  }
  const scan = results.map((r) => r.scan);
  const row = (what: string, xs: number[]): string => `| ${what} | ${cell(xs, 0)} | ${ratio(xs, scan)} |`;
  return [
    `codec: ${formatSize(corpus.wire.length)} dot-heavy corpus (every other line begins with a period), 64 KiB chunks, ${runs} runs, median (min–max)`,
    '',
    '| operation | MB/s (10^6 B/s of wire bytes) | ÷ indexOf scan |',
    '|---|---|---|',
    row('un-stuff (DataDecoder: end-of-data, dots, bare-newline policy; WebAssembly)', results.map((r) => r.unstuff)),
    row('stuff (DotEncoder; WebAssembly)', results.map((r) => r.stuff)),
    row('un-stuff, JavaScript reference (ReferenceDataDecoder)', results.map((r) => r.referenceUnstuff)),
    row('stuff, JavaScript reference (ReferenceDotEncoder)', results.map((r) => r.referenceStuff)),
    row('Buffer.indexOf scan for CRLF.CRLF (ceiling)', scan),
  ].join('\n');
}

function formatSize(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} B`;
}

interface AcceptResult {
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuPer1000: number;
  readonly peakMiB: number;
}

/** Postwire's accept path alone (delivery off): durable 250s per second. */
async function acceptRun(total: number, clients: number, size: number, reuse: boolean): Promise<AcceptResult> {
  const spool = await mkdtemp(join(tmpdir(), 'postwire-bench-'));
  const relay = await startServe(['--spool', spool, '--log-level', 'warn', '--max-message-size', String(Math.max(size * 2, 50 * MiB))], { nodeArgs: profileArgs() });
  const pid = relay.child.pid as number;
  try {
    const before = await sampleTree(pid);
    const { latencies, started, finished } = await inject(relay.port, total, clients, size, reuse);
    const after = await sampleTree(pid);
    return {
      rate: total / (Number(finished - started) / 1e9),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      cpuPer1000: ((after.cpuSeconds - before.cpuSeconds) / total) * 1000,
      peakMiB: after.peakKiB / KiB,
    };
  } finally {
    relay.kill('SIGTERM');
    await relay.exited;
    await rm(spool, { recursive: true, force: true });
  }
}

async function acceptCase(total: number, clients: number, size: number, runs: number, reuse: boolean): Promise<string> {
  const results: AcceptResult[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await acceptRun(total, clients, size, reuse);
    results.push(r);
    console.error(`run ${i + 1}/${runs}: ${r.rate.toFixed(0)} msg/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.cpuPer1000.toFixed(2)} CPU-s/1000, peak RSS ${r.peakMiB.toFixed(1)} MiB`);
  }
  return [
    `accept: ${total} × ${formatSize(size)} from ${clients} clients, ${reuse ? 'connections reused' : 'new connection per message'}, ${runs} runs, median (min–max)`,
    '',
    '| target | accepted msg/s | 250 p50 ms | 250 p99 ms | CPU s / 1000 msg | peak RSS MiB |',
    '|---|---|---|---|---|---|',
    `| postwire | ${cell(results.map((r) => r.rate), 0)} | ${cell(results.map((r) => r.p50), 2)} | ${cell(results.map((r) => r.p99), 2)} | ${cell(results.map((r) => r.cpuPer1000), 2)} | ${cell(results.map((r) => r.peakMiB), 1)} |`,
  ].join('\n');
}

/** N messages queued with delivery off, then a restart with delivery on: delivery alone. */
async function drainRun(total: number, size: number): Promise<{ rate: number; cpuPer1000: number }> {
  const spool = await mkdtemp(join(tmpdir(), 'postwire-bench-'));
  const sink = await startCountingSink();
  try {
    const filler = await startServe(['--spool', spool, '--log-level', 'warn']);
    try {
      await inject(filler.port, total, 20, size, true);
    } finally {
      filler.kill('SIGTERM');
      await filler.exited;
    }
    const relay = await startServe(['--spool', spool, '--log-level', 'warn', '--delivery', 'on', '--smarthost', `127.0.0.1:${sink.port}`], { nodeArgs: profileArgs() });
    try {
      const started = process.hrtime.bigint();
      const before = await sampleTree(relay.child.pid as number);
      await untilCounted(sink, total, 900_000);
      const after = await sampleTree(relay.child.pid as number);
      return { rate: total / (Number(sink.lastAt - started) / 1e9), cpuPer1000: ((after.cpuSeconds - before.cpuSeconds) / total) * 1000 };
    } finally {
      relay.kill('SIGTERM');
      await relay.exited;
    }
  } finally {
    await sink.close();
    await rm(spool, { recursive: true, force: true });
  }
}

async function drainCase(total: number, size: number, runs: number): Promise<string> {
  const results: Array<{ rate: number; cpuPer1000: number }> = [];
  for (let i = 0; i < runs; i++) {
    const r = await drainRun(total, size);
    results.push(r);
    console.error(`drain run ${i + 1}/${runs}: ${r.rate.toFixed(0)} msg/s, ${r.cpuPer1000.toFixed(2)} CPU-s/1000`);
  }
  return [
    `drain: ${total} × ${formatSize(size)} queued for one smart host, then delivered (delivery only), ${runs} runs, median (min–max)`,
    '',
    '| target | delivered msg/s | CPU s / 1000 msg |',
    '|---|---|---|',
    `| postwire | ${cell(results.map((r) => r.rate), 0)} | ${cell(results.map((r) => r.cpuPer1000), 2)} |`,
  ].join('\n');
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  const n = text === undefined ? fallback : Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not "${text}"`);
  return n;
}

async function main(): Promise<void> {
  const which = positionals[0] ?? 'relay';
  const runs = positiveInt('runs', values.runs, 3);
  const total = positiveInt('messages', values.messages, 5000);
  const clients = positiveInt('clients', values.clients, 20);
  const out: string[] = [];
  const print = (table: string): void => {
    out.push(table);
    console.log(`\n${table}\n`);
  };
  if (which === 'relay') print(await relayCase(total, clients, positiveInt('size', values.size, 10 * KiB), runs, availableTargets()));
  else if (which === 'big') print(await bigCase(positiveInt('size', values.size, 100 * MiB), runs, availableTargets().filter((t) => t !== 'floor')));
  else if (which === 'codec') print(codecCase(positiveInt('mib', values.mib, 256), runs));
  else if (which === 'drain') print(await drainCase(total, positiveInt('size', values.size, 10 * KiB), runs));
  else if (which === 'accept') print(await acceptCase(total, clients, positiveInt('size', values.size, 10 * KiB), runs, values.reuse === true));
  else if (which === 'suite') {
    const targets = availableTargets();
    console.log(`suite: ${new Date().toISOString()}, node ${process.version}, ${runs} runs per case`);
    print(await relayCase(5000, 20, KiB, runs, targets));
    print(await relayCase(5000, 20, 10 * KiB, runs, targets));
    print(await relayCase(3000, 20, 100 * KiB, runs, targets));
    print(await relayCase(5000, 200, 10 * KiB, runs, targets));
    // The floor holds each message in memory: it is a socket bound, not a large-message relay.
    print(await bigCase(100 * MiB, runs, targets.filter((t) => t !== 'floor')));
    print(codecCase(256, runs));
    print(await drainCase(5000, 10 * KiB, runs));
  } else throw new Error(`unknown benchmark "${which}" (available: relay, big, codec, drain, accept, suite)`);
}

main().catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
