/**
 * @module admin/messages
 * The message half of AdminApiV1: list (filters, sort, cursor paging over
 * QueueStore.searchMessages), show (envelope, headers, the whole history, what happens next and
 * why) and act (retry, hold, release, delete, bounce through qmgr/control, on ids or a filter,
 * with dry run and confirmation).
 *
 * Who calls it: admin/api.ts composes it into the one AdminApiV1 object that the HTTP server and
 * the offline CLI both use. Requests are validated here (admin/validate), so both transports get
 * the same errors.
 *
 * act's rules: exactly one of `ids` or `filter`. Ids are all checked before anything changes
 * (BAD_ID naming `ids[3]`); NOT_FOUND when none of them is in the queue, otherwise a missing one
 * is a result with `changed: false`. A filter is resolved to the matching ids first (paging the
 * whole match, at most MAX_MATCH), then CONFIRMATION_REQUIRED (nothing changed, the count in the
 * message) when more than one matched and neither `confirm` nor `dryRun` is set. Messages are
 * then acted on one at a time, in arrival order; a dry run previews each with the same rules
 * (qmgr/control `preview`) and changes nothing.
 *
 * Failure: ApiErrorV1 for the caller's mistakes; a QueueError from the store becomes UNAVAILABLE
 * (the store is closed or failing: retry later).
 */
import { ApiErrorV1 } from '../api/index.js';
import type {
  ActionRequestV1, ActionResultV1, AttemptV1, ListRequestV1, MessageDetailV1, MessageFilterV1, MessageListV1, MessageSummaryV1, RecipientStateV1,
} from '../api/index.js';
import { isDue, isFinal, lastReplies, parseQueueId, QueueError, readMessage } from '../queue/index.js';
import type { AttemptRecord, QueueId, QueueStore, SearchQuery, StoredMessage } from '../queue/index.js';
import { preview } from '../qmgr/index.js';
import type { ControlAction, ControlResult, QueueControl } from '../qmgr/index.js';
import type { Clock } from '../util/index.js';
import { formatDuration } from '../util/index.js';
import { ACTION_SCHEMA, check, LIST_SCHEMA } from './validate.js';

/** Most messages one filtered action resolves (a bigger match: narrow the filter, or repeat). */
export const MAX_MATCH = 100_000;
/** The header section `show` returns is cut at this many fields or octets. */
export const MAX_HEADER_FIELDS = 200;
export const MAX_HEADER_OCTETS = 64 * 1024;

export interface MessagesDeps {
  readonly store: QueueStore;
  readonly control: QueueControl;
  readonly clock: Clock;
  /** The --retry schedule in force (it changes on reload), for "what happens next" in words. */
  readonly retry?: () => readonly number[];
}

export interface MessagesApi {
  list(request: ListRequestV1): Promise<MessageListV1>;
  show(id: string): Promise<MessageDetailV1>;
  act(request: ActionRequestV1): Promise<ActionResultV1>;
}

export function createMessagesApi(deps: MessagesDeps): MessagesApi {
  const { store, clock } = deps;

  const summary = async (m: StoredMessage, history?: readonly AttemptRecord[]): Promise<MessageSummaryV1> => {
    const last = lastReplies(history ?? (await store.history(m.id)), m.recipients.length);
    return {
      id: m.id,
      sender: m.envelope.sender,
      recipients: m.recipients.map((r, i) => {
        const reply = last[i];
        return { address: r.address, state: r.state, ...(reply === undefined ? {} : { lastReply: reply }) };
      }),
      size: m.size,
      receivedAt: iso(m.receivedAt),
      attempts: m.attempts,
      ...(m.nextAttemptAt === undefined ? {} : { nextAttemptAt: iso(m.nextAttemptAt) }),
      ...(m.lease === undefined ? {} : { lease: { owner: m.lease.owner, until: iso(m.lease.until) } }),
    };
  };

  return {
    async list(request) {
      const req = check<ListRequestV1>(request, LIST_SCHEMA);
      const page = await storeCall(() => store.searchMessages({ ...searchOf(req, clock.now()), ...(req.sort ? { sort: req.sort } : {}), limit: req.limit ?? 50, ...(req.cursor !== undefined ? { cursor: req.cursor } : {}) }), 'cursor');
      const messages = await storeCall(() => Promise.all(page.messages.map((m) => summary(m))));
      return { messages, ...(page.next === undefined ? {} : { next: page.next }) };
    },

    async show(text) {
      const id = idOrThrow(text, 'id');
      const m = await storeCall(() => store.getMessage(id));
      if (m === undefined) throw new ApiErrorV1('NOT_FOUND', `no message ${id} in the queue`);
      const history = await storeCall(() => store.history(id));
      const env = m.envelope;
      return {
        ...(await summary(m, history)),
        client: { ...env.client },
        body: env.body,
        smtputf8: env.smtputf8,
        dsn: { ...(env.dsnRet ? { ret: env.dsnRet } : {}), ...(env.dsnEnvid !== undefined ? { envid: env.dsnEnvid } : {}) },
        headers: await storeCall(() => readHeaders(store, m)),
        history: history.map((h) => attemptV1(h, m)),
        next: nextStep(m, history, clock.now(), deps.retry?.()),
      };
    },

    async act(request) {
      const req = check<ActionRequestV1>(request, ACTION_SCHEMA);
      if ((req.ids === undefined) === (req.filter === undefined)) {
        throw new ApiErrorV1('BAD_REQUEST', 'give exactly one of ids or filter', req.ids === undefined ? 'ids' : 'filter');
      }
      if (req.action === 'bounce' && (req.reason === undefined || req.reason.trim() === '')) {
        throw new ApiErrorV1('BAD_REQUEST', 'bounce needs a reason: it goes into the DSN to the sender', 'reason');
      }
      const dryRun = req.dryRun === true;
      const targets: Array<{ id: string; message: StoredMessage | undefined }> = [];
      if (req.ids !== undefined) {
        const ids = req.ids.map((text, i) => idOrThrow(text, `ids[${i}]`));
        for (const id of ids) targets.push({ id, message: await storeCall(() => store.getMessage(id)) });
        if (targets.length > 0 && targets.every((t) => t.message === undefined)) {
          throw new ApiErrorV1('NOT_FOUND', ids.length === 1 ? `no message ${ids[0]} in the queue` : `none of the ${ids.length} messages is in the queue`);
        }
      } else {
        for (const message of await matchAll(store, searchOf(req.filter ?? {}, clock.now()))) targets.push({ id: message.id, message });
        if (targets.length > 1 && req.confirm !== true && !dryRun) {
          throw new ApiErrorV1('CONFIRMATION_REQUIRED', `the filter matches ${targets.length} messages: set confirm to ${req.action} them all (nothing was changed)`);
        }
      }
      const results: Array<ActionResultV1['results'][number]> = [];
      for (const t of targets) {
        if (t.message === undefined) {
          results.push({ id: t.id, changed: false, detail: 'not in the queue' });
          continue;
        }
        if (dryRun) {
          const p = preview(req.action, t.message, clock.now());
          results.push({ id: t.id, changed: p.changed, ...(p.detail === undefined ? {} : { detail: p.detail }) });
          continue;
        }
        const done = await storeCall(() => perform(deps.control, req.action, t.id, req.reason ?? ''));
        if (!done.ok) results.push({ id: t.id, changed: false, detail: done.message });
        else results.push({ id: t.id, changed: done.changed, ...(done.detail === undefined ? {} : { detail: done.detail }) });
      }
      return { action: req.action, dryRun, matched: targets.filter((t) => t.message !== undefined).length, results };
    },
  };
}

function perform(control: QueueControl, action: ControlAction, id: string, reason: string): Promise<ControlResult> {
  switch (action) {
    case 'retry':
      return control.retry(id);
    case 'hold':
      return control.hold(id, reason);
    case 'release':
      return control.release(id);
    case 'delete':
      return control.delete(id, reason);
    case 'bounce':
      return control.bounce(id, reason);
  }
}

/** The API filter as a store query; olderThanMs is relative to `now`. */
function searchOf(filter: MessageFilterV1, now: number): SearchQuery {
  return {
    ...(filter.state !== undefined ? { state: filter.state } : {}),
    ...(filter.domain !== undefined ? { domain: filter.domain } : {}),
    ...(filter.sender !== undefined ? { sender: filter.sender } : {}),
    ...(filter.recipient !== undefined ? { recipient: filter.recipient } : {}),
    ...(filter.olderThanMs !== undefined ? { receivedBefore: now - filter.olderThanMs } : {}),
    ...(filter.reply !== undefined ? { reply: filter.reply } : {}),
  };
}

async function matchAll(store: QueueStore, query: SearchQuery): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await storeCall(() => store.searchMessages({ ...query, limit: 1000, ...(cursor === undefined ? {} : { cursor }) }));
    out.push(...page.messages);
    if (out.length > MAX_MATCH) throw new ApiErrorV1('BAD_REQUEST', `the filter matches more than ${MAX_MATCH} messages: narrow it`, 'filter');
    if (page.next === undefined) return out;
    cursor = page.next;
  }
}

function idOrThrow(text: string, field: string): QueueId {
  const id = parseQueueId(text);
  if (!id) throw new ApiErrorV1('BAD_ID', `${JSON.stringify(text)} is not a queue id`, field);
  return id;
}

/** Store failures are the server's, not the caller's: UNAVAILABLE; a refused cursor is the caller's. */
async function storeCall<T>(work: () => Promise<T>, invalidField?: string): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (!(err instanceof QueueError)) throw err;
    if (err.code === 'QUEUE_INVALID' && invalidField !== undefined) throw new ApiErrorV1('BAD_REQUEST', err.message, invalidField);
    throw new ApiErrorV1('UNAVAILABLE', err.message);
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function attemptV1(h: AttemptRecord, m: StoredMessage): AttemptV1 {
  return {
    at: iso(h.at),
    nextHop: h.nextHop,
    results: h.results.map((r) => ({ recipient: m.recipients[r.recipient]?.address ?? `#${r.recipient}`, state: r.state as RecipientStateV1, reply: r.reply })),
    ...(h.nextAttemptAt === undefined ? {} : { nextAttemptAt: iso(h.nextAttemptAt) }),
    ...(h.note === undefined ? {} : { note: h.note }),
  };
}

/** What happens next to the message, and why, in words (MessageDetailV1.next). */
export function nextStep(m: StoredMessage, history: readonly AttemptRecord[], now: number, retry?: readonly number[]): MessageDetailV1['next'] {
  const states = m.recipients.map((r) => r.state);
  if (m.lease !== undefined && m.lease.until > now) {
    return { why: `being delivered now by ${m.lease.owner} (lease until ${iso(m.lease.until)})` };
  }
  if (states.every(isFinal)) {
    const counts = countStates(states);
    return { why: `nothing: every recipient is final (${counts}); the message leaves the spool after --keep-done` };
  }
  const held = states.filter((s) => s === 'held').length;
  const heldWhy = (): string => {
    const entry = [...history].reverse().find((h) => h.results.some((r) => r.state === 'held'));
    const reply = entry?.results.find((r) => r.state === 'held')?.reply ?? '';
    if (entry?.note === 'hold') return `held by an operator: ${reply}`;
    return `held after a delivery problem (${entry?.note ?? reply}); release it to try again`;
  };
  if (m.nextAttemptAt === undefined) return { why: held > 0 ? heldWhy() : 'nothing is due' };
  const at = iso(m.nextAttemptAt);
  const when = m.nextAttemptAt <= now ? 'due now' : `at ${at}`;
  const heldNote = held > 0 ? `; ${held} recipient(s) ${heldWhy()}` : '';
  if (m.attempts === 0) {
    const retried = history.some((h) => h.note === 'retry' || h.note === 'release');
    return { at, why: `${retried ? 'retry requested by an operator' : 'first attempt'}: ${when}${heldNote}` };
  }
  const lastOp = history[history.length - 1];
  if (lastOp?.note === 'retry' || lastOp?.note === 'release') {
    return { at, why: `${lastOp.note === 'retry' ? 'retry' : 'release'} by an operator: ${when}${heldNote}` };
  }
  const last = lastReplies(history, m.recipients.length).find((r, i) => r !== undefined && isDue(states[i] ?? 'deleted'));
  const schedule = retry !== undefined && retry.length > 0
    ? ` (after attempt ${m.attempts}; schedule ${retry.map(formatDuration).join(',')}, the last repeating)`
    : ` (after attempt ${m.attempts})`;
  return { at, why: `retry ${when}${last === undefined ? '' : `: ${firstLine(last)}`}${schedule}${heldNote}` };
}

function countStates(states: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => `${n} ${s}`).join(', ');
}

function firstLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** The header section of the stored body, unfolded, bounded by MAX_HEADER_FIELDS and MAX_HEADER_OCTETS. */
async function readHeaders(store: QueueStore, message: StoredMessage): Promise<Array<{ name: string; value: string }>> {
  const parts: Buffer[] = [];
  let size = 0;
  // As sent: the prepended fields (a DKIM-Signature) first.
  for await (const chunk of readMessage(store, message)) {
    parts.push(Buffer.from(chunk));
    size += chunk.byteLength;
    const sofar = Buffer.concat(parts);
    if (sofar.indexOf('\r\n\r\n') >= 0 || sofar.subarray(0, 2).toString('latin1') === '\r\n' || size >= MAX_HEADER_OCTETS) break;
  }
  const all = Buffer.concat(parts);
  const end = all.subarray(0, 2).toString('latin1') === '\r\n' ? 0 : all.indexOf('\r\n\r\n');
  const text = all.subarray(0, Math.min(end < 0 ? all.length : end, MAX_HEADER_OCTETS)).toString('utf8');
  const fields: Array<{ name: string; value: string }> = [];
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    const last = fields[fields.length - 1];
    if ((line.startsWith(' ') || line.startsWith('\t')) && last !== undefined) {
      last.value += ` ${line.trim()}`;
      continue;
    }
    if (fields.length >= MAX_HEADER_FIELDS) break;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields.push({ name: line.slice(0, colon), value: line.slice(colon + 1).trim() });
  }
  return fields;
}
