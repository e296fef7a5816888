/**
 * Shared-queue end-to-end support: a schema of the test's own, migrated by the real
 * `postwire migrate`; N real `postwire serve` nodes on it (the test's schema name is the prefix
 * of every node name, so pg_terminate_backend can aim at this test's connections only); and
 * submission lanes that send numbered messages round-robin over the nodes and remember which
 * ones got their 250.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { RawClient } from './raw-client.js';
import { BIN, startServe } from './process.js';
import type { ServeProcess } from './process.js';
import { PG_URL, dropSchema, testSchemaName } from './pg.js';

export interface Cluster {
  readonly schema: string;
  readonly nodes: Array<ServeProcess | undefined>;
  /** Node i's name: `<schema>-n<i>`. */
  nodeName(i: number): string;
  /** SIGTERM every live node; resolves with their exit codes. */
  stop(): Promise<Array<number | null>>;
  /** SIGKILL what is left and drop the schema. */
  destroy(): Promise<void>;
}

export async function migrateSchema(schema: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'migrate', '--queue', PG_URL, '--queue-schema', schema], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`postwire migrate exited ${code}: ${out}`))));
  });
}

/** Migrate a fresh schema and start `count` nodes on it with the same flags (plus queue, schema and node name). */
export async function startCluster(count: number, flags: readonly string[], onLine?: (node: number, line: string) => void): Promise<Cluster> {
  const schema = testSchemaName();
  await migrateSchema(schema);
  const nodeName = (i: number): string => `${schema}-n${i}`;
  const nodes: Array<ServeProcess | undefined> = [];
  const cluster: Cluster = {
    schema,
    nodes,
    nodeName,
    async stop() {
      const live = nodes.filter((n): n is ServeProcess => n !== undefined);
      for (const n of live) n.kill('SIGTERM');
      return Promise.all(live.map((n) => n.exited));
    },
    async destroy() {
      for (const n of nodes) {
        if (!n) continue;
        n.kill('SIGKILL');
        await n.exited;
      }
      await dropSchema(schema);
    },
  };
  try {
    for (let i = 0; i < count; i++) {
      nodes.push(await startServe(
        ['--queue', PG_URL, '--queue-schema', schema, '--node-name', nodeName(i), '--queue-connections', '4', ...flags],
        onLine ? { onStdoutLine: (line) => onLine(i, line) } : {},
      ));
    }
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

export function bodyFor(n: number): Buffer {
  const seed = createHash('sha256').update(`cluster-${n}`).digest('hex');
  return Buffer.from(`Subject: cluster ${n}\r\nX-Seed: ${seed}\r\n\r\n.${seed}\r\n${seed.slice(0, 20 + (n % 40))}\r\n`);
}

export function dotStuff(body: Buffer): Buffer {
  return Buffer.from(`${body.toString('latin1').replace(/(^|\r\n)\./g, '$1..')}.\r\n`, 'latin1');
}

export interface Submission {
  /** n → queue id, for every message that got its 250. */
  readonly acked: Map<number, string>;
  /** Messages that got a 4xx at end-of-data (and were sent again, to another node, until a 250). */
  readonly tempfailed: Map<number, number>;
  /** Other end-of-data replies (never expected). */
  readonly other: string[];
  /** The text of every 4xx end-of-data reply. */
  readonly tempfailReplies: string[];
}

export interface SubmitOptions {
  readonly total: number;
  /** Lanes per node; lane i talks to node i % nodes. */
  readonly lanesPerNode: number;
  readonly rcpt: (n: number) => string;
  /** Which nodes to use now (a lane whose node is gone moves to the next one listed). */
  readonly ports: () => number[];
  /** A 4xx is retried (same message, same recipient) after this many ms, up to `retries` times. */
  readonly retryMs?: number;
  readonly retries?: number;
  /** Stop taking new messages (the lanes finish the one they are on). */
  readonly stop?: () => boolean;
  readonly first?: number;
}

/** Send messages first..first+total-1 round-robin over the nodes; resolves when all are sent (or stopped). */
export async function submit(o: SubmitOptions): Promise<Submission> {
  const result: Submission = { acked: new Map(), tempfailed: new Map(), other: [], tempfailReplies: [] };
  const first = o.first ?? 0;
  let next = first;
  const queue: number[] = [];
  const take = (): number | undefined => queue.shift() ?? (next < first + o.total ? next++ : undefined);
  const lanes = o.ports().length * o.lanesPerNode;
  await Promise.all(Array.from({ length: lanes }, async (_, lane) => {
    let client: RawClient | undefined;
    let port: number | undefined;
    for (;;) {
      if (o.stop?.()) break;
      const n = take();
      if (n === undefined) break;
      try {
        const ports = o.ports();
        const want = ports[lane % ports.length];
        if (client === undefined || client.closed || port !== want || want === undefined) {
          client?.close();
          if (want === undefined) throw new Error('no node left');
          port = want;
          client = await RawClient.connect(want);
          await client.reply();
          await client.command('EHLO cluster.test');
        }
        await client.write(`MAIL FROM:<load@source.test>\r\nRCPT TO:<${o.rcpt(n)}>\r\nDATA\r\n`);
        const [mail, rcpt, data] = await client.replies_(3);
        if (mail?.code !== 250 || rcpt?.code !== 250 || data?.code !== 354) throw new Error(`refused: ${JSON.stringify([mail, rcpt, data])}`);
        await client.write(dotStuff(bodyFor(n)));
        const r = await client.reply(30_000);
        if (r.code === 250) {
          result.acked.set(n, /queued as (\S+)/.exec(r.text)?.[1] ?? '');
        } else if (r.code >= 400 && r.code < 500) {
          result.tempfailReplies.push(`${r.code} ${r.text}`);
          const tries = (result.tempfailed.get(n) ?? 0) + 1;
          result.tempfailed.set(n, tries);
          if (tries <= (o.retries ?? 50)) {
            await new Promise((resolve) => setTimeout(resolve, o.retryMs ?? 100));
            queue.push(n);
          }
        } else result.other.push(`${n}: ${r.text}`);
      } catch {
        // The node went away mid-message: no 250, so the message is not ours to find later.
        client?.close();
        client = undefined;
      }
    }
    client?.close();
  }));
  return result;
}

/** Recipient → copies the sink accepted. */
export function countCopies(delivered: ReadonlyArray<{ rcpts: readonly string[] }>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const t of delivered) for (const r of t.rcpts) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

/** The recipient of a `"msg":"ambiguous"` JSON log line, or undefined. */
export function ambiguousRcpt(line: string): string | undefined {
  if (!line.includes('"ambiguous"')) return undefined;
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    return o.msg === 'ambiguous' && typeof o.rcpt === 'string' ? o.rcpt : undefined;
  } catch {
    return undefined;
  }
}
