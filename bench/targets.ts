/**
 * @module bench/targets
 * The relays under test, each started fresh on loopback and relaying everything to the counting
 * sink: Postwire (the real `postwire serve` binary, a fresh spool, durable as in production) and,
 * when Debian's postfix is installed and we are root, a private Postfix 3.x instance
 * (test/support/postfix.ts relay mode: relayhost = the sink, queue files fsynced before the 250,
 * nothing of the system's instance touched).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawClient } from '../test/support/raw-client.js';
import { startServe } from '../test/support/process.js';
import { postfixUnavailable, startPostfix } from '../test/support/postfix.js';

export type TargetName = 'postwire' | 'postfix';

export interface Target {
  readonly name: TargetName;
  readonly port: number;
  /** The root of the target's process tree (CPU and memory accounting). */
  readonly root: number;
  stop(): Promise<void>;
}

export function targetUnavailable(name: TargetName): string | undefined {
  return name === 'postfix' ? postfixUnavailable() : undefined;
}

export async function startTarget(name: TargetName, sinkPort: number, maxSize: number, nodeArgs: readonly string[]): Promise<Target> {
  return name === 'postwire' ? startPostwire(sinkPort, maxSize, nodeArgs) : startPostfixRelay(sinkPort);
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
    async stop() {
      relay.kill('SIGTERM');
      await relay.exited;
      await rm(spool, { recursive: true, force: true });
    },
  };
}

async function startPostfixRelay(sinkPort: number): Promise<Target> {
  const postfix = await startPostfix({ relayTo: { host: '127.0.0.1', port: sinkPort } });
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
    return { name: 'postfix', port: postfix.port, root: await postfix.masterPid(), stop: () => postfix.stop() };
  } catch (err) {
    await postfix.stop();
    throw err;
  }
}
