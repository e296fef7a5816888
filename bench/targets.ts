/**
 * @module bench/targets
 * The relays under test, each started fresh on loopback and relaying everything to the counting
 * sink: Postwire (the real `postwire serve` binary, a fresh spool, durable as in production) and,
 * when Debian's postfix is installed and we are root, a private Postfix 3.x instance
 * (test/support/postfix.ts relay mode: relayhost = the sink, queue files fsynced before the 250,
 * nothing of the system's instance touched).
 *
 * Postwire on the shared queue (`--queue URL --nodes N`): a fresh schema of its own (`pw_t_…`,
 * created by the real `postwire migrate`, dropped by stop()) and N `postwire serve` processes
 * on it; the load is spread over their ports, CPU summed over them, and `dbCpuSeconds` adds the
 * PostgreSQL backends they used (from /proc; the WAL writer and checkpointer are not in it).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RawClient } from '../test/support/raw-client.js';
import { startServe } from '../test/support/process.js';
import { postfixUnavailable, startPostfix } from '../test/support/postfix.js';
import { migrateSchema } from '../test/support/cluster.js';
import { admin, dropSchema, testSchemaName } from '../test/support/pg.js';
import type { ServeProcess } from '../test/support/process.js';
import { sampleTree } from './proc.js';

/** `floor` is bench/floor-relay: the dialogue's sockets alone, no relay work (a lower bound). */
export type TargetName = 'postwire' | 'postfix' | 'floor';

export interface Target {
  readonly name: TargetName;
  readonly port: number;
  /** The root of the target's process tree (CPU and memory accounting). */
  readonly root: number;
  /** Every node's port and root (one for an embedded Postwire or Postfix). */
  readonly ports: readonly number[];
  readonly roots: readonly number[];
  /** CPU seconds the shared queue's database backends have used (shared queue only). */
  dbCpuSeconds?(): Promise<number>;
  stop(): Promise<void>;
}

/** `--queue URL --nodes N`: Postwire on a shared PostgreSQL queue instead of a spool. */
export interface SharedQueue {
  readonly url: string;
  readonly nodes: number;
}

export function targetUnavailable(name: TargetName): string | undefined {
  return name === 'postfix' ? postfixUnavailable() : undefined;
}

export async function startTarget(name: TargetName, sinkPort: number, maxSize: number, nodeArgs: readonly string[], shared?: SharedQueue): Promise<Target> {
  if (name === 'postwire' && shared !== undefined) return startPostwireCluster(sinkPort, maxSize, nodeArgs, shared);
  if (name === 'floor') return startFloor(sinkPort);
  return name === 'postwire' ? startPostwire(sinkPort, maxSize, nodeArgs) : startPostfixRelay(sinkPort);
}

async function startPostwireCluster(sinkPort: number, maxSize: number, nodeArgs: readonly string[], shared: SharedQueue): Promise<Target> {
  const schema = testSchemaName();
  await migrateSchema(schema);
  const nodes: ServeProcess[] = [];
  const stop = async (): Promise<void> => {
    for (const n of nodes) n.kill('SIGTERM');
    await Promise.all(nodes.map((n) => n.exited));
    await dropSchema(schema);
  };
  try {
    for (let i = 0; i < shared.nodes; i++) {
      nodes.push(await startServe(
        ['--queue', shared.url, '--queue-schema', schema, '--node-name', `${schema}-n${i}`, '--delivery', 'on', '--smarthost', `127.0.0.1:${sinkPort}`, '--log-level', 'warn', '--max-message-size', String(maxSize)],
        { nodeArgs },
      ));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const roots = nodes.map((n) => n.child.pid as number);
  return {
    name: 'postwire',
    port: nodes[0]?.port ?? 0,
    root: roots[0] ?? 0,
    ports: nodes.map((n) => n.port),
    roots,
    async dbCpuSeconds() {
      const r = await admin<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1', [`postwire:${schema}%`]);
      const samples = await Promise.all(r.rows.map((row) => sampleTree(row.pid).catch(() => ({ cpuSeconds: 0 }))));
      return samples.reduce((a, x) => a + x.cpuSeconds, 0);
    },
    stop,
  };
}

async function startPostwire(sinkPort: number, maxSize: number, nodeArgs: readonly string[]): Promise<Target> {
  const spool = await mkdtemp(join(tmpdir(), 'postwire-bench-'));
  const relay = await startServe(
    ['--spool', spool, '--delivery', 'on', '--smarthost', `127.0.0.1:${sinkPort}`, '--log-level', 'warn', '--max-message-size', String(maxSize)],
    { nodeArgs },
  );
  return {
    name: 'postwire',
    port: relay.port,
    root: relay.child.pid as number,
    ports: [relay.port],
    roots: [relay.child.pid as number],
    async stop() {
      relay.kill('SIGTERM');
      await relay.exited;
      await rm(spool, { recursive: true, force: true });
    },
  };
}

const POSTFIX_SMTPD_LIMIT = 256;

async function startPostfixRelay(sinkPort: number): Promise<Target> {
  // 256 smtpd processes, not Postfix's default 100: master sizes the listen backlog by the limit,
  // and 200 clients overflowed it (half-open connections that never got a 220). An operator
  // expecting 200 concurrent clients raises it; below 100 clients it changes nothing.
  const postfix = await startPostfix({ relayTo: { host: '127.0.0.1', port: sinkPort }, smtpdProcessLimit: POSTFIX_SMTPD_LIMIT });
  try {
    // `postfix start` returns once the master runs; wait for its smtpd to answer.
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const c = await RawClient.connect(postfix.port);
        const banner = await c.reply();
        c.close();
        if (banner.code === 220) break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const root = await postfix.masterPid();
    return { name: 'postfix', port: postfix.port, root, ports: [postfix.port], roots: [root], stop: () => postfix.stop() };
  } catch (err) {
    await postfix.stop();
    throw err;
  }
}

async function startFloor(sinkPort: number): Promise<Target> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./floor-relay.js', import.meta.url)), String(sinkPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`floor-relay exited with ${code} before listening`)));
  });
  const root = child.pid as number;
  return {
    name: 'floor',
    port,
    root,
    ports: [port],
    roots: [root],
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
