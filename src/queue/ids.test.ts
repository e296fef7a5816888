import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QueueIdGenerator, isQueueId, newQueueId, parseQueueId } from './ids.js';

test('ids are valid, and parse case-insensitively', () => {
  const id = newQueueId(Date.UTC(2026, 10, 29));
  assert.ok(isQueueId(id));
  assert.equal(parseQueueId(` ${id.toLowerCase()} `), id);
  assert.equal(parseQueueId('not-an-id'), undefined);
  assert.equal(parseQueueId('ILOU0000000000000000'), undefined);
});

test('a generator is strictly increasing, within one millisecond and when the clock steps back', () => {
  const gen = new QueueIdGenerator();
  const ids = [gen.next(1000), gen.next(1000), gen.next(1000), gen.next(999), gen.next(1001)];
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
});

test('the largest random tail still counts up within the id alphabet', () => {
  const gen = new QueueIdGenerator(() => Uint8Array.of(255, 255, 255, 255, 255));
  const ids = Array.from({ length: 1000 }, () => gen.next(5));
  for (let i = 1; i < ids.length; i++) assert.ok((ids[i] as string) > (ids[i - 1] as string));
  assert.ok(ids.every((id) => isQueueId(id)));
});
