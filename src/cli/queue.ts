/**
 * @module cli/queue
 * `postwire queue list|show|retry|hold|release|delete|bounce [ID… | filters] [--json]
 * [--dry-run] [--yes] [--reason TEXT] [--admin HOST:PORT | --spool DIR]`: see and steer queued
 * mail through AdminApiV1, online (a running server's admin API) or offline (the spool), see
 * cli/admin-target.
 *
 * Filters (list and every action): --state, --domain, --sender, --recipient, --older-than
 * DURATION, --reply TEXT; list also takes --sort received|next-attempt|size, --limit N and
 * --cursor (the `next` of the previous page, printed on stderr when there is more).
 *
 * An action names messages by ID (one or more) or by filters (at least one filter: an action on
 * the whole queue must be asked for with a filter such as --older-than 0s). A filter is first
 * resolved with a dry run; `--dry-run` prints that and stops; more than one match without --yes
 * prints the count and exits 2, changing nothing; otherwise the matched ids are acted on in
 * batches of BATCH, with progress on stderr when stderr is a terminal. bounce needs --reason
 * (it goes into the DSN); hold and delete keep one in the history when given.
 *
 * Output: --json prints the API's JSON (list: MessageListV1, show: MessageDetailV1, actions:
 * ActionResultV1 over every batch); otherwise cli/format's tables. Exit codes: 0 ok, 1 runtime
 * failure (server unreachable, store failure, an id not in the queue), 2 usage (bad flags, a bad
 * id, confirmation needed).
 */
import type { ActionRequestV1, ActionResultV1, ActionV1, AdminApiV1, ListRequestV1, MessageFilterV1, SortV1 } from '../api/index.js';
import { ApiErrorV1 } from '../api/index.js';
import { parseDuration } from '../util/index.js';
import { openTarget, parseCommand, reportFailure, UsageError } from './admin-target.js';
import type { OptionSpec } from './admin-target.js';
import { actionLines, listTable, showPage } from './format.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, wantsHelp } from './io.js';
import type { CliIo } from './io.js';

/** Messages per act request when a filter's matches are worked through. */
export const BATCH = 100;

const ACTIONS: readonly ActionV1[] = ['retry', 'hold', 'release', 'delete', 'bounce'];
const SORTS: readonly SortV1[] = ['received', 'next-attempt', 'size'];

const OPTIONS: Readonly<Record<string, OptionSpec>> = {
  json: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  yes: { type: 'boolean' },
  reason: { type: 'string' },
  state: { type: 'string' },
  domain: { type: 'string' },
  sender: { type: 'string' },
  recipient: { type: 'string' },
  'older-than': { type: 'string' },
  reply: { type: 'string' },
  sort: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
};

export const QUEUE_USAGE = `Usage: postwire queue list [filters] [--sort received|next-attempt|size] [--limit N] [--cursor C] [--json]
       postwire queue show ID [--json]
       postwire queue retry|hold|release|delete|bounce (ID... | filters) [--reason TEXT] [--dry-run] [--yes] [--json]
Filters: --state STATE --domain DOMAIN --sender TEXT --recipient TEXT --older-than DURATION --reply TEXT
Target:  --admin HOST:PORT (a running server; default the configured --admin) [--admin-token TOKEN]
         --spool DIR (offline, while no server runs on it)
`;

export async function runQueue(args: readonly string[], io: CliIo): Promise<number> {
  if (args.length === 0 || args[0] === 'help' || wantsHelp(args)) {
    (args.length === 0 ? io.stderr : io.stdout)(QUEUE_USAGE);
    return args.length === 0 ? EXIT_USAGE : EXIT_OK;
  }
  let target;
  try {
    const parsed = parseCommand(args, OPTIONS);
    const [sub, ...rest] = parsed.positionals;
    const v = parsed.values;
    const filter = filterOf(v);
    const job = plan(sub ?? '', rest, filter, v);
    target = await openTarget(parsed.settingArgs, io);
    return await job(target.api, io, v.json === true);
  } catch (err) {
    return reportFailure(io, 'queue', err);
  } finally {
    await target?.close();
  }
}

type Job = (api: AdminApiV1, io: CliIo, json: boolean) => Promise<number>;

/** Check the command line completely before anything connects, and say what to run. */
function plan(sub: string, ids: readonly string[], filter: MessageFilterV1, v: Readonly<Record<string, string | boolean | undefined>>): Job {
  const hasFilter = Object.keys(filter).length > 0;
  if (sub === 'list') {
    if (ids.length > 0) throw new UsageError(`list takes filters, not ids (${ids[0]}): use "queue show ID"`);
    const request: ListRequestV1 = { ...filter, ...listOptions(v) };
    return async (api, io, json) => {
      const list = await api.list(request);
      io.stdout(json ? `${JSON.stringify(list, null, 2)}\n` : list.messages.length === 0 ? '' : listTable(list, Date.now()));
      if (!json) io.stderr(`${list.messages.length} message(s)${list.next !== undefined ? `; more: --cursor ${list.next}` : ''}\n`);
      return EXIT_OK;
    };
  }
  for (const only of ['sort', 'limit', 'cursor'] as const) if (v[only] !== undefined) throw new UsageError(`--${only} is for "queue list"`);
  if (sub === 'show') {
    if (ids.length !== 1 || hasFilter) throw new UsageError('show takes exactly one ID');
    const id = ids[0] ?? '';
    return async (api, io, json) => {
      const detail = await api.show(id);
      io.stdout(json ? `${JSON.stringify(detail, null, 2)}\n` : showPage(detail, Date.now()));
      return EXIT_OK;
    };
  }
  const action = ACTIONS.find((a) => a === sub);
  if (action === undefined) throw new UsageError(`unknown queue command ${JSON.stringify(sub)} (list, show, ${ACTIONS.join(', ')})`);
  if (ids.length > 0 && hasFilter) throw new UsageError(`${action}: give IDs or filters, not both`);
  if (ids.length === 0 && !hasFilter) throw new UsageError(`${action}: give an ID or a filter (--state, --domain, --sender, --recipient, --older-than, --reply)`);
  const reason = typeof v.reason === 'string' ? v.reason : undefined;
  if (action === 'bounce' && (reason === undefined || reason.trim() === '')) throw new UsageError('bounce needs --reason TEXT: it goes into the DSN to the sender');
  const base = { action, ...(reason !== undefined ? { reason } : {}) };
  const dryRun = v['dry-run'] === true;
  if (ids.length > 0) {
    return async (api, io, json) => {
      const result = await api.act({ ...base, ids, dryRun });
      io.stdout(json ? `${JSON.stringify(result, null, 2)}\n` : actionLines(result));
      return result.results.some((r) => r.detail === 'not in the queue') ? EXIT_FAILURE : EXIT_OK;
    };
  }
  return async (api, io, json) => {
    const preview = await api.act({ ...base, filter, dryRun: true });
    if (dryRun) {
      io.stdout(json ? `${JSON.stringify(preview, null, 2)}\n` : actionLines(preview));
      return EXIT_OK;
    }
    if (preview.matched > 1 && v.yes !== true) {
      io.stderr(`postwire queue: the filter matches ${preview.matched} messages: add --yes to ${action} them all (--dry-run lists them); nothing was changed\n`);
      return EXIT_USAGE;
    }
    const result = await inBatches(api, io, base, preview.results.map((r) => r.id));
    io.stdout(json ? `${JSON.stringify(result, null, 2)}\n` : actionLines(result));
    return EXIT_OK;
  };
}

async function inBatches(api: AdminApiV1, io: CliIo, base: Pick<ActionRequestV1, 'action' | 'reason'>, ids: readonly string[]): Promise<ActionResultV1> {
  const results: Array<ActionResultV1['results'][number]> = [];
  const progress = io.stderrIsTTY === true && ids.length > BATCH;
  for (let at = 0; at < ids.length; at += BATCH) {
    const chunk = ids.slice(at, at + BATCH);
    let batch: ActionResultV1;
    try {
      batch = await api.act({ ...base, ids: chunk });
    } catch (err) {
      // Every message of this batch left the queue since the dry run (retention, another operator).
      if (!(err instanceof ApiErrorV1 && err.code === 'NOT_FOUND')) throw err;
      batch = { action: base.action, dryRun: false, matched: 0, results: chunk.map((id) => ({ id, changed: false, detail: 'not in the queue' })) };
    }
    results.push(...batch.results);
    if (progress) io.stderr(`\r${base.action}: ${results.length}/${ids.length}`);
  }
  if (progress) io.stderr('\n');
  return { action: base.action, dryRun: false, matched: results.filter((r) => r.detail !== 'not in the queue').length, results };
}

function filterOf(v: Readonly<Record<string, string | boolean | undefined>>): MessageFilterV1 {
  const text = (name: string): string | undefined => (typeof v[name] === 'string' ? (v[name] as string) : undefined);
  const olderThan = text('older-than');
  let olderThanMs: number | undefined;
  if (olderThan !== undefined) {
    const d = parseDuration(olderThan);
    if (!d.ok) throw new UsageError(`--older-than ${JSON.stringify(olderThan)}: ${d.reason}`);
    olderThanMs = d.value;
  }
  const state = text('state');
  return {
    ...(state !== undefined ? { state: state as MessageFilterV1['state'] & string } : {}),
    ...(text('domain') !== undefined ? { domain: text('domain') } : {}),
    ...(text('sender') !== undefined ? { sender: text('sender') } : {}),
    ...(text('recipient') !== undefined ? { recipient: text('recipient') } : {}),
    ...(olderThanMs !== undefined ? { olderThanMs } : {}),
    ...(text('reply') !== undefined ? { reply: text('reply') } : {}),
  } as MessageFilterV1;
}

function listOptions(v: Readonly<Record<string, string | boolean | undefined>>): Pick<ListRequestV1, 'sort' | 'limit' | 'cursor'> {
  const sort = v.sort;
  if (sort !== undefined && !SORTS.includes(sort as SortV1)) throw new UsageError(`--sort must be one of ${SORTS.join(', ')}`);
  const limitText = v.limit;
  let limit: number | undefined;
  if (typeof limitText === 'string') {
    if (!/^\d+$/.test(limitText)) throw new UsageError(`--limit ${JSON.stringify(limitText)} is not a number`);
    limit = Number(limitText);
  }
  return {
    ...(typeof sort === 'string' ? { sort: sort as SortV1 } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(typeof v.cursor === 'string' ? { cursor: v.cursor } : {}),
  };
}
