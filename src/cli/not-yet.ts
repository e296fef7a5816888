/**
 * @module cli/not-yet
 * The subcommands DESIGN §3 promises but this version does not have: user.
 *
 * They are listed in the usage text (marked "not available yet") and refuse clearly with
 * `postwire <cmd>: not available in this version yet` and exit 2, whatever their arguments, so
 * scripts written against the design fail loudly today instead of being told "unknown command",
 * and so that the usage text and the design never disagree about what exists.
 *
 * Each gets its own file when it is built (KumoMTA kcli: one file per subcommand); this one then
 * shrinks, and goes when the list is empty.
 */
import { EXIT_USAGE, type CliIo } from './io.js';

export function runNotYet(name: string, io: CliIo): number {
  io.stderr(`postwire ${name}: not available in this version yet\n`);
  return EXIT_USAGE;
}
