/**
 * Runs the real `postwire serve` binary as a child process on 127.0.0.1 port 0 and finds the
 * bound port in the line serve prints once ready: `postwire: listening on 127.0.0.1:40123`.
 * `onStdoutLine` sees every log line from the start (startup lines included, which pino may
 * write after the ready line, since that goes to stderr).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { withDefaults } from './flags.js';

export const BIN = fileURLToPath(new URL('../../../bin/postwire.js', import.meta.url));

export interface ServeProcess {
  readonly port: number;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly output: () => string;
  kill(signal: NodeJS.Signals): void;
}

export interface ServeOptions {
  /** Every whole stdout line (the JSON log), from the first byte on: nothing logged at startup is missed. */
  readonly onStdoutLine?: (line: string) => void;
  /** Extra node flags for the child, before the script (the benchmark's `--profile` passes --cpu-prof). */
  readonly nodeArgs?: readonly string[];
}

export async function startServe(flags: readonly string[], options: ServeOptions = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), BIN, 'serve', '--listen', '127.0.0.1:0', '--hostname', 'mx.postwire.test', ...withDefaults(flags)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const onLine = options.onStdoutLine;
  if (onLine !== undefined) {
    let partial = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let ready = false;
    const onData = (chunk: Buffer): void => {
      // Keep only the tail for error messages: a long run logs a line per message.
      out = (out + chunk.toString()).slice(-64 * 1024);
      if (ready) return;
      const m = /postwire: listening on [^\n]*?:(\d+)/.exec(out);
      if (m) {
        ready = true;
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    void exited.then((code) => reject(new Error(`postwire serve exited (${code}) before it was ready:\n${out}`)));
    setTimeout(() => reject(new Error(`postwire serve not ready after 20 s:\n${out}`)), 20_000).unref();
  });
  return { port, child, exited, output: () => out, kill: (s) => void child.kill(s) };
}
