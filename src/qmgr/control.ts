/**
 * @module qmgr/control
 * What an operator (the admin API, and through it the CLI and the web page) may do to queued
 * mail, one message at a time: hold (due recipients stop being tried), release (held recipients
 * are due at once), retry (deferred and ambiguous recipients are due at once), delete (every
 * recipient not yet final becomes `deleted`, no DSN), bounce (every recipient not yet final
 * becomes `bounced`, and the sender gets a DSN quoting the operator's reason and each
 * recipient's last reply). After release and retry the manager is woken, so "at once" means now.
 * Each step is recorded in the message's history by the store (QueueStore.hold, release,
 * retryNow, operatorDelete, operatorBounce). `preview` says what a step would do without doing
 * it (the API's dry run), by the same rules.
 *
 * Bounce, in order (DESIGN invariant 5, the same order as the runner's failed attempts): the DSN
 * is committed to the queue first, then the recipients are marked bounced, so a crash in between
 * can repeat the DSN but never lose it. Nothing bounces a bounce: a null-sender message is
 * marked bounced with no DSN (logged). NOTIFY is honoured (NEVER, or a list without FAILURE:
 * no DSN for that recipient).
 *
 * Leases: hold and release work with a delivery in flight (see QueueStore.hold); retry refuses
 * then (the run's own record sets the next time); delete and bounce apply at once and the run
 * cannot undo them (recipient states only move forward), though a transaction already past
 * end-of-data may still reach the recipient: the detail of the result says so.
 *
 * It trusts its caller for authorisation; ids come from outside, so they are validated here.
 * Failure: store errors reject (the API turns them into UNAVAILABLE); a DSN that cannot be
 * queued rejects before anything is marked.
 */
import { buildDsn, streamDsn } from '../bounce/index.js';
import type { DsnRecipient } from '../bounce/index.js';
import type { MessageIntake } from '../cleanup/index.js';
import { domainOf, isDue, isFinal, lastReplies, parseQueueId } from '../queue/index.js';
import type { QueueId, QueueStore, StoredMessage } from '../queue/index.js';
import type { Logger } from '../obs/index.js';
import { dsnOriginal } from './dsn-original.js';
import type { Clock } from '../util/index.js';

export type ControlResult =
  | { readonly ok: true; readonly changed: boolean; readonly detail?: string }
  | { readonly ok: false; readonly code: 'BAD_ID' | 'NOT_FOUND'; readonly message: string };

export type ControlAction = 'retry' | 'hold' | 'release' | 'delete' | 'bounce';

export interface QueueControl {
  hold(id: string, reason: string): Promise<ControlResult>;
  release(id: string): Promise<ControlResult>;
  retry(id: string): Promise<ControlResult>;
  delete(id: string, reason: string): Promise<ControlResult>;
  bounce(id: string, reason: string): Promise<ControlResult>;
}

export interface QueueControlDeps {
  readonly store: QueueStore;
  /** Wake the queue manager (release, retry); a no-op when delivery is off or offline. */
  readonly wake: () => void;
  /** For bounce's DSN. */
  readonly intake: MessageIntake;
  /** Our name: the DSN's Reporting-MTA. */
  readonly hostname: string;
  readonly clock: Clock;
  readonly random: () => number;
  readonly log: Logger;
  /** Told of every recipient an operator made final (metrics and the charts, like the runner's outcomes). */
  readonly onOutcome?: (state: 'bounced' | 'deleted', receivedAt: number, now: number, destination: string) => void;
}

/** The reply recorded for a delete without a reason. */
export const DEFAULT_DELETE_REASON = 'deleted by operator';
/** The reply recorded for a hold without a reason. */
export const DEFAULT_HOLD_REASON = 'held by operator';

/**
 * What `action` would do to `message` now, by the rules the store applies: whether anything
 * would change, and when not, why. Pure.
 */
export function preview(action: ControlAction, message: StoredMessage, now: number): { readonly changed: boolean; readonly detail?: string } {
  const states = message.recipients.map((r) => r.state);
  const leased = message.lease !== undefined && message.lease.until > now;
  switch (action) {
    case 'hold':
      return states.some(isDue) ? { changed: true } : { changed: false, detail: 'no recipient is waiting for delivery' };
    case 'release':
      return states.includes('held') ? { changed: true } : { changed: false, detail: 'no recipient is held' };
    case 'retry':
      if (!states.some((s) => s === 'deferred' || s === 'ambiguous')) return { changed: false, detail: 'no recipient is deferred or ambiguous' };
      if (leased) return { changed: false, detail: `being delivered now (lease held by ${message.lease?.owner ?? '?'}); its result sets the next attempt` };
      return { changed: true };
    case 'delete':
    case 'bounce':
      if (states.every(isFinal)) return { changed: false, detail: 'every recipient is already final' };
      return leased ? { changed: true, detail: 'a delivery is in flight: a recipient past end-of-data may still receive it' } : { changed: true };
  }
}

export function createQueueControl(deps: QueueControlDeps): QueueControl {
  const { store } = deps;
  const find = async (text: string): Promise<{ readonly stored: StoredMessage } | ControlResult> => {
    const id = parseQueueId(text);
    if (!id) return { ok: false, code: 'BAD_ID', message: `${JSON.stringify(text)} is not a queue id` };
    const message = await store.getMessage(id);
    if (!message) return { ok: false, code: 'NOT_FOUND', message: `no message ${id} in the queue` };
    return { stored: message };
  };
  const unchanged = (action: ControlAction, message: StoredMessage): ControlResult => {
    const why = preview(action, message, deps.clock.now());
    return { ok: true, changed: false, ...(why.detail === undefined ? {} : { detail: why.detail }) };
  };

  return {
    async hold(text, reason) {
      const found = await find(text);
      if (!('stored' in found)) return found;
      const changed = await store.hold(found.stored.id, reason === '' ? DEFAULT_HOLD_REASON : reason);
      return changed ? { ok: true, changed } : unchanged('hold', found.stored);
    },
    async release(text) {
      const found = await find(text);
      if (!('stored' in found)) return found;
      const changed = await store.release(found.stored.id);
      if (changed) deps.wake();
      return changed ? { ok: true, changed } : unchanged('release', found.stored);
    },
    async retry(text) {
      const found = await find(text);
      if (!('stored' in found)) return found;
      const changed = await store.retryNow(found.stored.id);
      if (changed) deps.wake();
      return changed ? { ok: true, changed } : unchanged('retry', (await store.getMessage(found.stored.id)) ?? found.stored);
    },
    async delete(text, reason) {
      const found = await find(text);
      if (!('stored' in found)) return found;
      const moved = await store.operatorDelete(found.stored.id, reason === '' ? DEFAULT_DELETE_REASON : reason);
      if (moved.length === 0) return unchanged('delete', found.stored);
      told(deps, found.stored, moved, 'deleted');
      deps.log.info({ queueId: found.stored.id, recipients: moved.length, reason }, 'deleted by operator');
      return { ok: true, changed: true, detail: `${moved.length} recipient(s) deleted` };
    },
    async bounce(text, reason) {
      const found = await find(text);
      if (!('stored' in found)) return found;
      const message = found.stored;
      const pending = message.recipients.flatMap((r, i) => (isFinal(r.state) ? [] : [i]));
      if (pending.length === 0) return unchanged('bounce', message);
      const dsn = await queueOperatorDsn(deps, message, pending, reason);
      const moved = await store.operatorBounce(message.id, reason, pending);
      told(deps, message, moved, 'bounced');
      deps.log.info({ queueId: message.id, recipients: moved.length, reason, dsn }, 'bounced by operator');
      return { ok: true, changed: moved.length > 0, detail: `${moved.length} recipient(s) bounced; ${dsn}` };
    },
  };
}

function told(deps: QueueControlDeps, message: StoredMessage, moved: readonly number[], state: 'bounced' | 'deleted'): void {
  const now = deps.clock.now();
  for (const i of moved) deps.onOutcome?.(state, message.receivedAt, now, domainOf(message.recipients[i]?.address ?? ''));
}

/** Queue the failure DSN for an operator bounce; returns what happened, in words, for the result. */
async function queueOperatorDsn(deps: QueueControlDeps, message: StoredMessage, pending: readonly number[], reason: string): Promise<string> {
  if (message.envelope.sender === '') {
    deps.log.info({ queueId: message.id }, 'operator bounce of a bounce: no DSN (nothing bounces a bounce)');
    return 'no DSN: the message has the null sender (nothing bounces a bounce)';
  }
  const now = deps.clock.now();
  const last = lastReplies(await deps.store.history(message.id), message.recipients.length);
  const recipients = pending.map((i): DsnRecipient => {
    const r = message.recipients[i];
    const reply = last[i];
    return {
      address: r?.address ?? '',
      ...(r?.orcpt ? { orcpt: r.orcpt } : {}),
      ...(r?.notify ? { notify: r.notify } : {}),
      action: 'failed',
      // RFC 3463 5.0.0: "other undefined status": the operator's decision, not a remote verdict.
      status: '5.0.0',
      diagnosticCode: reply === undefined ? `bounced by the operator: ${reason}` : `${reply}\n(bounced by the operator: ${reason})`,
      lastAttemptDate: now,
    };
  });
  const env = message.envelope;
  const dsn = buildDsn({
    reportingMta: deps.hostname,
    queueId: message.id,
    arrivalDate: message.receivedAt,
    now,
    envelope: { sender: env.sender, smtputf8: env.smtputf8, body: env.body, ...(env.dsnRet ? { dsnRet: env.dsnRet } : {}), ...(env.dsnEnvid !== undefined ? { dsnEnvid: env.dsnEnvid } : {}) },
    recipients,
    reason,
    messageIdDomain: deps.hostname,
    boundarySeed: String(deps.random()),
  });
  if (!dsn) return 'no DSN: NOTIFY asked for none';
  let incoming;
  try {
    incoming = deps.intake.openGenerated({ recipient: dsn.recipient, body: dsn.body, smtputf8: dsn.smtputf8, origin: `dsn:${message.id}` });
  } catch (err) {
    // As the runner does: a sender we cannot write to does not stop the bounce.
    deps.log.warn({ queueId: message.id, sender: dsn.recipient, err: String(err) }, 'cannot return a DSN to this sender');
    return `no DSN: cannot return one to ${dsn.recipient} (${err instanceof Error ? err.message : String(err)})`;
  }
  try {
    for await (const chunk of streamDsn(dsn, dsnOriginal(deps.store, deps.log, message))) await incoming.write(chunk);
    const id = await incoming.commit();
    deps.log.info({ queueId: message.id, dsn: id, to: dsn.recipient, kind: dsn.kind }, 'DSN queued');
    return `DSN ${id} queued to ${dsn.recipient}`;
  } catch (err) {
    await incoming.abort();
    throw err;
  }
}

