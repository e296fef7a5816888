/**
 * Runs test/support/aiosmtpd-sink.py (Python's aiosmtpd, Debian's python3-aiosmtpd) under
 * /usr/bin/python3 as a next hop for interop tests: it binds 127.0.0.1 port 0 and reports the port
 * on stdout; each message it receives becomes a `.eml` file holding aiosmtpd's
 * `envelope.original_content` (the un-stuffed DATA bytes, CRLF kept) beside a `.json` envelope.
 * `aiosmtpdUnavailable()` gives a skip reason when that Python or module is missing (scripts/ci-deps.sh
 * installs it in CI). `stop()` ends the child and removes its temp directory; the child also exits
 * when its stdin closes, so it cannot outlive a test process that died.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Debian's Python, not whatever python3 is first on PATH (a pyenv one lacks python3-aiosmtpd). */
export const SYSTEM_PYTHON = '/usr/bin/python3';
const SINK = fileURLToPath(new URL('../../../test/support/aiosmtpd-sink.py', import.meta.url));

export interface AiosmtpdMessage {
  /** The sink's sequence name: 000001, 000002, … */
  readonly name: string;
  readonly mailFrom: string;
  readonly rcptTos: string[];
  readonly mailOptions: string[];
  readonly smtpUtf8: boolean;
  /** envelope.original_content, exactly. */
  readonly data: Buffer;
}

export interface AiosmtpdPeer {
  readonly port: number;
  readonly outDir: string;
  /** Every message received so far, in arrival order. */
  messages(): Promise<AiosmtpdMessage[]>;
  /** Resolves with the first `n` messages, or rejects after `ms`. */
  waitForMessages(n: number, ms?: number): Promise<AiosmtpdMessage[]>;
  stop(): Promise<void>;
}

interface EnvelopeJson {
  mail_from: string;
  rcpt_tos: string[];
  mail_options: string[];
  smtp_utf8: boolean;
}

/** Why the aiosmtpd sink cannot run here, or undefined when it can. */
export function aiosmtpdUnavailable(python = SYSTEM_PYTHON): string | undefined {
  const probe = spawnSync(python, ['-c', 'import aiosmtpd'], { stdio: 'ignore' });
  if (probe.error !== undefined) return `${python} not found`;
  if (probe.status !== 0) return `${python} cannot import aiosmtpd (Debian's python3-aiosmtpd; scripts/ci-deps.sh installs it)`;
  return undefined;
}

export async function startAiosmtpd(python = SYSTEM_PYTHON): Promise<AiosmtpdPeer> {
  const outDir = await mkdtemp(join(tmpdir(), 'postwire-aiosmtpd-'));
  let child: ChildProcess | undefined;
  try {
    child = spawn(python, [SINK, outDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    const proc = child;
    let output = '';
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const port = await new Promise<number>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        output = (output + chunk.toString()).slice(-16 * 1024);
        const m = /^PORT (\d+)$/m.exec(output);
        if (m) resolve(Number(m[1]));
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      proc.once('error', reject);
      void exited.then((code) => reject(new Error(`aiosmtpd sink exited (${code}) before it was ready:\n${output}`)));
      setTimeout(() => reject(new Error(`aiosmtpd sink not ready after 15 s:\n${output}`)), 15_000).unref();
    });

    const messages = async (): Promise<AiosmtpdMessage[]> => {
      const names = (await readdir(outDir)).filter((f) => f.endsWith('.eml')).sort();
      return Promise.all(
        names.map(async (file) => {
          const name = file.slice(0, -'.eml'.length);
          const envelope = JSON.parse(await readFile(join(outDir, `${name}.json`), 'utf8')) as EnvelopeJson;
          return {
            name,
            mailFrom: envelope.mail_from,
            rcptTos: envelope.rcpt_tos,
            mailOptions: envelope.mail_options,
            smtpUtf8: envelope.smtp_utf8,
            data: await readFile(join(outDir, file)),
          };
        }),
      );
    };
    return {
      port,
      outDir,
      messages,
      async waitForMessages(n, ms = 30_000) {
        const deadline = Date.now() + ms;
        for (;;) {
          const count = (await readdir(outDir)).filter((f) => f.endsWith('.eml')).length;
          if (count >= n) return (await messages()).slice(0, n);
          if (Date.now() > deadline) throw new Error(`aiosmtpd received ${count} of ${n} messages within ${ms} ms; its output:\n${output}`);
          await new Promise((r) => setTimeout(r, 25));
        }
      },
      async stop() {
        try {
          if (proc.exitCode === null && proc.signalCode === null) {
            proc.kill('SIGTERM');
            const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
            await exited;
            clearTimeout(timer);
          }
        } finally {
          await rm(outDir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await rm(outDir, { recursive: true, force: true });
    throw err;
  }
}
