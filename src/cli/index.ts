/**
 * @module cli
 * runCli(argv, io): the `postwire` command. bin/postwire.js calls it with process.argv.slice(2)
 * and sets process.exitCode from the result; nothing here calls process.exit, so every
 * subcommand runs in-process in tests with an injected CliIo.
 *
 * Dispatch is a table of subcommands, one file each (KumoMTA kcli): serve, check-config, send,
 * migrate, help, queue and explain (admin API clients, cli/queue.ts and cli/explain.ts, which
 * print their own usage), and user (the AUTH user file, cli/user.ts).
 * Exit codes (DESIGN §3): 0 ok, 1 runtime failure, 2 usage or configuration error; errors go to
 * stderr one per line, prefixed `postwire: `. The CLI may import config/, api/, util/ and main.ts
 * (serve and migrate only, lazily).
 */
import { didYouMean } from '../config/index.js';
import { runCheckConfig } from './check-config.js';
import { runHelp, runNoCommand } from './help.js';
import { EXIT_USAGE, processIo, wantsHelp, type CliIo } from './io.js';
import { runMigrate } from './migrate.js';
import { runExplain } from './explain.js';
import { runQueue } from './queue.js';
import { runServe } from './serve.js';
import { runSend } from './send.js';
import { runUser } from './user.js';

interface Command {
  readonly name: string;
  readonly summary: string;
  /** Whether `<cmd> --help` prints the usage (the unbuilt commands just refuse). */
  readonly takesFlags: boolean;
  run(args: readonly string[], io: CliIo): Promise<number> | number;
}

const COMMANDS: readonly Command[] = [
  { name: 'serve', summary: 'run the relay', takesFlags: true, run: (args, io) => runServe(args, io) },
  { name: 'check-config', summary: 'validate and print the effective configuration', takesFlags: true, run: runCheckConfig },
  { name: 'help', summary: 'show this help', takesFlags: false, run: (_args, io) => runHelp(io, COMMANDS) },
  { name: 'queue', summary: 'list, show, retry, hold, release, delete or bounce queued mail', takesFlags: false, run: runQueue },
  { name: 'explain', summary: 'the decision path for a recipient or a queued message', takesFlags: false, run: runExplain },
  { name: 'send', summary: 'submit a message read from stdin (sendmail-like: -f, -t, -i)', takesFlags: false, run: runSend },
  { name: 'user', summary: 'add, remove or list AUTH users (--users FILE)', takesFlags: false, run: runUser },
  { name: 'migrate', summary: 'create or upgrade the shared PostgreSQL queue schema (--queue URL)', takesFlags: true, run: (args, io) => runMigrate(args, io) },
];

export type { CliIo } from './io.js';
export { runServe, type ServeDeps, type MainModule, type RunningServer, type SignalSource } from './serve.js';

export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined) return runNoCommand(io, COMMANDS);
  if (name === '--help' || name === '-h') return runHelp(io, COMMANDS);
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    const near = didYouMean(name, COMMANDS.map((c) => c.name));
    io.stderr(`postwire: unknown command ${JSON.stringify(name)}${near === undefined ? '' : ` (did you mean "${near}"?)`}\n`);
    io.stderr('postwire: run "postwire help" for the list of commands\n');
    return EXIT_USAGE;
  }
  if (command.takesFlags && wantsHelp(args)) return runHelp(io, COMMANDS);
  return command.run(args, io);
}
