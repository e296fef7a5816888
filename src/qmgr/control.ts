/**
 * @module qmgr/control
 * What an operator (the admin API and CLI of the operations issue) may do to the queue manager's
 * work: hold a message (its due recipients stop being tried), release it (held recipients are
 * due at once, and the manager is woken so "at once" means now). Each step is recorded in the
 * message's history by the store.
 *
 * It trusts its caller for authorisation; ids come from outside, so they are validated here.
 */
import { parseQueueId } from '../queue/index.js';
import type { QueueStore } from '../queue/index.js';

export type ControlResult = { readonly ok: true; readonly changed: boolean } | { readonly ok: false; readonly code: 'BAD_ID' | 'NOT_FOUND'; readonly message: string };

export interface QueueControl {
  hold(id: string, reason: string): Promise<ControlResult>;
  release(id: string): Promise<ControlResult>;
}

export function createQueueControl(deps: { readonly store: QueueStore; readonly wake: () => void }): QueueControl {
  const find = async (text: string): Promise<{ id: NonNullable<ReturnType<typeof parseQueueId>> } | ControlResult> => {
    const id = parseQueueId(text);
    if (!id) return { ok: false, code: 'BAD_ID', message: `${JSON.stringify(text)} is not a queue id` };
    if (!(await deps.store.getMessage(id))) return { ok: false, code: 'NOT_FOUND', message: `no message ${id} in the queue` };
    return { id };
  };
  return {
    async hold(text, reason) {
      const found = await find(text);
      if (!('id' in found)) return found;
      return { ok: true, changed: await deps.store.hold(found.id, reason) };
    },
    async release(text) {
      const found = await find(text);
      if (!('id' in found)) return found;
      const changed = await deps.store.release(found.id);
      if (changed) deps.wake();
      return { ok: true, changed };
    },
  };
}
