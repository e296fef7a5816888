/**
 * The one rule every interop test follows when its peer (Postfix, aiosmtpd, Python, swaks) is
 * missing: on a developer's machine the test skips and says why; on CI (`CI=true`, set by
 * `.ci/run`, where scripts/ci-deps.sh has installed every peer) a missing peer is a failure, so
 * a broken install can never turn the interop suite into a row of silent skips.
 *
 * `peerGate(peer, reason)` takes a peer's name and its `…Unavailable()` reason (undefined when it
 * can run) and returns the `skip` option for the suite or test that needs it. On CI with a reason
 * it also registers one failing test that names the peer and the reason. Call it at module top
 * level, before the suite. Also here: `runProcess`, the asynchronous spawn the interop tests run
 * their client programs with (the server under test runs in this process: a synchronous spawn
 * would starve it).
 */
import { test } from 'node:test';
import { spawn } from 'node:child_process';

export interface PeerGate {
  readonly skip: string | false;
}

export function peerGate(peer: string, reason: string | undefined, env: NodeJS.ProcessEnv = process.env): PeerGate {
  if (reason === undefined) return { skip: false };
  const why = `${peer} unavailable: ${reason}`;
  if (env['CI'] === 'true') {
    test(`${peer} is installed (CI=true: scripts/ci-deps.sh installs it)`, () => {
      throw new Error(`CI=true, so this interop test must run, but ${why}`);
    });
  }
  return { skip: why };
}

export interface ProcessResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `cmd` without blocking the event loop; `input` goes to its stdin. Killed after `timeoutMs`. */
export function runProcess(cmd: string, args: readonly string[], options: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 30_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    child.on('error', (err) => resolve({ status: -1, signal: null, stdout, stderr: `${stderr}${String(err)}` }));
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}
