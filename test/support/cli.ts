/**
 * Runs the real `postwire` binary (bin/postwire.js under this Node) to completion, with a
 * deadline, capturing its output: for tests of the operator commands (queue, explain) as a shell
 * sees them. The environment is the test's own plus `env`, minus every POSTWIRE_* variable the
 * test runner may have, so only what a test passes reaches the command.
 */
import { spawn } from 'node:child_process';
import { BIN } from './process.js';

export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  /** Written to the command's stdin, which is then closed; without it stdin is /dev/null. */
  readonly stdin?: Buffer | string;
  /** Only PATH and these reach the command (instead of the test's environment minus POSTWIRE_*). */
  readonly bareEnv?: boolean;
}

export function runPostwire(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 30_000, options: CliOptions = {}): Promise<CliRun> {
  const base = options.bareEnv
    ? { PATH: process.env['PATH'] ?? '' }
    : Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSTWIRE_')));
  return new Promise((resolve, reject) => {
    const stdin = options.stdin === undefined ? 'ignore' : 'pipe';
    const child = spawn(process.execPath, [BIN, ...args], { stdio: [stdin, 'pipe', 'pipe'], env: { ...base, ...env } });
    if (options.stdin !== undefined) child.stdin?.end(options.stdin);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`postwire ${args.join(' ')} still running after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** For assertion messages. */
export function described(r: CliRun): string {
  return `exit ${r.code ?? r.signal}\nstdout: ${r.stdout.slice(0, 3000)}\nstderr: ${r.stderr.slice(0, 3000)}`;
}
