/**
 * The request validator alone: what each schema accepts, and the code and field of every refusal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiErrorV1 } from '../api/index.js';
import { ACTION_SCHEMA, check, fromQuery, LIST_SCHEMA, NO_FIELDS } from './validate.js';

function refused(work: () => unknown, code: string, field?: string): void {
  assert.throws(work, (err: unknown) => err instanceof ApiErrorV1 && err.code === code && err.field === field, `${code} ${field ?? ''}`);
}

test('action bodies: accepted shapes', () => {
  const ok = { action: 'bounce', filter: { state: 'deferred', olderThanMs: 0, reply: '451' }, reason: 'r', dryRun: true, confirm: false };
  assert.deepEqual(check(ok, ACTION_SCHEMA), ok);
  assert.deepEqual(check({ action: 'hold', ids: [] }, ACTION_SCHEMA), { action: 'hold', ids: [] });
});

test('action bodies: every refusal names its field', () => {
  refused(() => check(null, ACTION_SCHEMA), 'BAD_REQUEST');
  refused(() => check([], ACTION_SCHEMA), 'BAD_REQUEST');
  refused(() => check({}, ACTION_SCHEMA), 'BAD_REQUEST', 'action');
  refused(() => check({ action: 'hold', extra: 1 }, ACTION_SCHEMA), 'UNKNOWN_FIELD', 'extra');
  refused(() => check({ action: 'hold', filter: { nope: 1 } }, ACTION_SCHEMA), 'UNKNOWN_FIELD', 'filter.nope');
  refused(() => check({ action: 'hold', filter: 'x' }, ACTION_SCHEMA), 'BAD_REQUEST', 'filter');
  refused(() => check({ action: 'hold', filter: { olderThanMs: 1.5 } }, ACTION_SCHEMA), 'BAD_REQUEST', 'filter.olderThanMs');
  refused(() => check({ action: 'hold', ids: [1] }, ACTION_SCHEMA), 'BAD_REQUEST', 'ids');
  refused(() => check({ action: 'hold', confirm: 1 }, ACTION_SCHEMA), 'BAD_REQUEST', 'confirm');
  refused(() => check({ action: 'hold', reason: 'x'.repeat(1001) }, ACTION_SCHEMA), 'BAD_REQUEST', 'reason');
  refused(() => check(JSON.parse('{"action": "hold", "__proto__": {"x": 1}}'), ACTION_SCHEMA), 'UNKNOWN_FIELD', '__proto__');
});

test('query strings: parsed by the schema, unknown and repeated parameters refused', () => {
  assert.deepEqual(fromQuery(new URLSearchParams('state=held&limit=5&olderThanMs=60000'), LIST_SCHEMA), { state: 'held', limit: 5, olderThanMs: 60000 });
  refused(() => fromQuery(new URLSearchParams('limit=5x'), LIST_SCHEMA), 'BAD_REQUEST', 'limit');
  refused(() => fromQuery(new URLSearchParams('limit=1&limit=2'), LIST_SCHEMA), 'BAD_REQUEST', 'limit');
  refused(() => fromQuery(new URLSearchParams('what=1'), LIST_SCHEMA), 'UNKNOWN_FIELD', 'what');
  refused(() => fromQuery(new URLSearchParams('x=1'), NO_FIELDS), 'UNKNOWN_FIELD', 'x');
  refused(() => check(fromQuery(new URLSearchParams('limit=0'), LIST_SCHEMA), LIST_SCHEMA), 'BAD_REQUEST', 'limit');
});
