/**
 * @module cli/explain
 * `postwire explain ADDRESS|ID [--json] [--admin HOST:PORT | --spool DIR]`: the decision path
 * for a recipient address or a queued message, from AdminApiV1.explain (admin/explain): the route
 * and why, the hosts in the order they would be tried with their addresses, the TLS policy and
 * why, the destination's delivery window now, and for a message each destination's last reply
 * and next attempt. Online it asks the running server (its routes, its DNS, its live windows);
 * offline (--spool) it routes with the configuration given on the command line.
 *
 * Exit codes: 0 ok (an unroutable address is an answer, not a failure), 1 the server or spool
 * failed or the id is not in the queue, 2 usage (no target, or one that is neither an address
 * nor a queue id).
 */
import { openTarget, parseCommand, reportFailure, UsageError } from './admin-target.js';
import { explainPage } from './format.js';
import { EXIT_OK, EXIT_USAGE, wantsHelp } from './io.js';
import type { CliIo } from './io.js';

export const EXPLAIN_USAGE = `Usage: postwire explain ADDRESS|ID [--json] [--admin HOST:PORT | --spool DIR] [--admin-token TOKEN]
`;

export async function runExplain(args: readonly string[], io: CliIo): Promise<number> {
  if (args.length === 0 || wantsHelp(args)) {
    (args.length === 0 ? io.stderr : io.stdout)(EXPLAIN_USAGE);
    return args.length === 0 ? EXIT_USAGE : EXIT_OK;
  }
  let target;
  try {
    const parsed = parseCommand(args, { json: { type: 'boolean' } });
    if (parsed.positionals.length !== 1) throw new UsageError('give exactly one ADDRESS or queue ID');
    target = await openTarget(parsed.settingArgs, io);
    const result = await target.api.explain({ target: parsed.positionals[0] ?? '' });
    io.stdout(parsed.values.json === true ? `${JSON.stringify(result, null, 2)}\n` : explainPage(result));
    return EXIT_OK;
  } catch (err) {
    return reportFailure(io, 'explain', err);
  } finally {
    await target?.close();
  }
}
