/**
 * @module cli/help
 * `postwire help`, `postwire --help`, `-h`, and `<command> --help` for commands that take flags:
 * the usage text on stdout, exit 0.
 *
 * Running postwire with no command at all is a usage error instead: the same text on stderr and
 * exit 2, so a script that forgot its argument fails rather than "succeeding" at printing help.
 *
 * The text itself is built in usage.ts from the command table and config's SCHEMA; this file
 * only decides where it goes and what the exit code is.
 */
import { EXIT_OK, EXIT_USAGE, type CliIo } from './io.js';
import { usageText, type CommandSummary } from './usage.js';

export function runHelp(io: CliIo, commands: readonly CommandSummary[]): number {
  io.stdout(usageText(commands));
  return EXIT_OK;
}

export function runNoCommand(io: CliIo, commands: readonly CommandSummary[]): number {
  io.stderr(usageText(commands));
  return EXIT_USAGE;
}
