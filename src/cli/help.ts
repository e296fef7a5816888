/**
 * @module cli/help
 * `postwire help`, `--help`, `-h`: the usage text on stdout, exit 0. Running postwire with no
 * command at all is a usage error instead: the same text on stderr, exit 2, so a script that
 * forgot its argument fails rather than "succeeding" at printing help.
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
