/**
 * @module cli/not-yet
 * The subcommands DESIGN §3 promises but this version does not have (queue, explain, send, user,
 * migrate). They are listed in the usage text and refuse clearly with exit 2, so scripts written
 * against the design fail loudly today instead of being told "unknown command".
 */
import { EXIT_USAGE, type CliIo } from './io.js';

export function runNotYet(name: string, io: CliIo): number {
  io.stderr(`postwire ${name}: not available in this version yet\n`);
  return EXIT_USAGE;
}
