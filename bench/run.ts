/**
 * `npm run bench -- accept [--messages N] [--clients C] [--size BYTES] [--runs R] [--reuse]`
 *
 * The accept benchmark: starts the real `postwire serve` on a fresh spool (durable: every 250
 * waits for the group-committed flush), injects N messages of a given size from C concurrent
 * clients, and reports messages/s, the latency of the 250 after end-of-data (p50/p99), the
 * relay's CPU seconds per 1,000 messages (from /proc) and its peak RSS (VmHWM). Several runs;
 * the table shows medians with the min–max spread. Loopback only, port 0.
 *
 * By default every message uses a new connection (as the Postfix comparison in the benchmark
 * issue does); --reuse sends all of a client's messages over one connection.
 */
import { mkdtemp, rm, readFile } from 'node:fs/promises';
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

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    messages: { type: 'string', default: '5000' },
    clients: { type: 'string', default: '20' },
    size: { type: 'string', default: '10240' },
    runs: { type: 'string', default: '3' },
    reuse: { type: 'boolean', default: false },
  },
});

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

async function oneRun(total: number, clients: number, size: number, reuse: boolean): Promise<RunResult> {
  const spool = await mkdtemp(join(tmpdir(), 'postwire-bench-'));
  const relay = await startServe(['--spool', spool, '--log-level', 'warn', '--max-message-size', String(Math.max(size * 2, 50 * 1024 * 1024))]);
  const pid = relay.child.pid as number;
  const latencies: number[] = [];
  let next = 0;
  const before = await procStat(pid);
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
          c = await RawClient.connect(relay.port);
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
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const after = await procStat(pid);
  relay.kill('SIGTERM');
  await relay.exited;
  await rm(spool, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    rate: total / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuPer1000: ((after.cpuSeconds - before.cpuSeconds) / total) * 1000,
    peakRssMiB: after.peakRssKiB / 1024,
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function cell(xs: readonly number[], digits: number): string {
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

async function main(): Promise<void> {
  const which = positionals[0] ?? 'accept';
  if (which !== 'accept') throw new Error(`unknown benchmark "${which}" (available: accept)`);
  const total = Number(values.messages);
  const clients = Number(values.clients);
  const size = Number(values.size);
  const runs = Number(values.runs);
  const results: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await oneRun(total, clients, size, values.reuse === true);
    results.push(r);
    console.error(`run ${i + 1}/${runs}: ${r.rate.toFixed(0)} msg/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.cpuPer1000.toFixed(2)} CPU-s/1000, peak RSS ${r.peakRssMiB.toFixed(1)} MiB`);
  }
  console.log(`\naccept: ${total} × ${size} B from ${clients} clients, ${values.reuse ? 'connections reused' : 'new connection per message'}, ${runs} runs, median (min–max)`);
  console.log('| target | accepted msg/s | 250 latency p50 ms | p99 ms | relay CPU s / 1000 msg | peak RSS MiB |');
  console.log('|---|---|---|---|---|---|');
  console.log(
    `| postwire | ${cell(results.map((r) => r.rate), 0)} | ${cell(results.map((r) => r.p50), 2)} | ${cell(results.map((r) => r.p99), 2)} | ${cell(results.map((r) => r.cpuPer1000), 2)} | ${cell(results.map((r) => r.peakRssMiB), 1)} |`,
  );
}

main().catch((err: unknown) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
