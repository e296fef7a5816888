/**
 * @module cli/io
 * The CLI's only window on the process: where output goes, which environment it reads, and the
 * system host name. runCli takes a CliIo so tests run every subcommand in-process and read what
 * it printed; the default writes to process.stdout/stderr and reads process.env.
 *
 * Conventions every subcommand keeps: messages for people go to stderr prefixed `postwire: `;
 * stdout carries only a command's result (usage, the configuration) so it can be piped.
 * Exit codes are DESIGN §3's: 0 ok, 1 runtime failure, 2 usage or configuration error.
 *
 * This and serve.ts's default signal source are the only places cli/ touches `process`; nothing
 * calls process.exit (the bin sets process.exitCode from runCli's result).
 */
import { hostname } from 'node:os';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env?: Readonly<Record<string, string | undefined>>;
  /** The system host name (default for --hostname); os.hostname() when absent. */
  hostname?: string;
  /** stderr is a terminal: long operations report progress there. */
  stderrIsTTY?: boolean;
  /** All of standard input (`send` reads the message from it). */
  readStdin?: () => Promise<Buffer>;
  /** Ask for a secret on the terminal without echo; absent when stdin is not a terminal. */
  promptSecret?: (prompt: string) => Promise<string>;
}

export const processIo: CliIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  env: process.env,
  stderrIsTTY: process.stderr.isTTY === true,
  readStdin: async () => {
    const parts: Buffer[] = [];
    for await (const chunk of process.stdin) parts.push(Buffer.from(chunk as Uint8Array));
    return Buffer.concat(parts);
  },
  ...(process.stdin.isTTY === true ? { promptSecret } : {}),
};

/** Reads one line from the terminal in raw mode, echoing nothing; Ctrl-C or Ctrl-D give up. */
function promptSecret(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    // Echo off before the prompt shows: whatever is typed after seeing it is never echoed.
    stdin.setRawMode(true);
    stdin.resume();
    process.stderr.write(prompt);
    let text = '';
    const done = (err?: Error): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003' || ch === '\u0004') return done(new Error('cancelled'));
        if (ch === '\u007f' || ch === '\b') text = [...text].slice(0, -1).join('');
        else text += ch;
      }
    };
    stdin.on('data', onData);
  });
}

export function systemHostname(io: CliIo): string {
  return io.hostname ?? hostname();
}

/** Exit codes of DESIGN §3. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Print configuration or usage errors, one per line; always EXIT_USAGE. */
export function reportErrors(io: CliIo, errors: readonly string[]): number {
  for (const e of errors) io.stderr(`postwire: ${e}\n`);
  return EXIT_USAGE;
}

/** An error's message and its cause chain, for `postwire: <what failed>: <why>`. */
export function explainError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = 'code' in err && typeof err.code === 'string' && !err.message.includes(err.code) ? ` (${err.code})` : '';
  const cause = err.cause === undefined ? '' : `: ${explainError(err.cause)}`;
  return `${err.message}${code}${cause}`;
}

/** True when args ask for help (before any `--`). */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}
