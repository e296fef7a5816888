import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DestinationWindows } from './destinations.js';

test('a window admits at most its limit and hands slots over in order', async () => {
  const w = new DestinationWindows(2);
  const order: number[] = [];
  const r1 = await w.acquire('mx:a.test');
  const r2 = await w.acquire('mx:a.test');
  const third = w.acquire('mx:a.test').then((r) => (order.push(3), r));
  const fourth = w.acquire('mx:a.test').then((r) => (order.push(4), r));
  const other = await w.acquire('mx:b.test');
  assert.equal(w.activeFor('mx:a.test'), 2);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [], 'no third slot while two are held');
  r1();
  const r3 = await third;
  r1(); // releasing twice frees nothing more
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [3]);
  r2();
  const r4 = await fourth;
  assert.deepEqual(order, [3, 4]);
  r3();
  r4();
  other();
  assert.equal(w.activeFor('mx:a.test'), 0);
});

test('a per-route limit overrides the default', async () => {
  const w = new DestinationWindows(20);
  const r = await w.acquire('smarthost:relay:25', 1);
  let second = false;
  void w.acquire('smarthost:relay:25', 1).then(() => (second = true));
  await new Promise((res) => setImmediate(res));
  assert.equal(second, false);
  r();
  await new Promise((res) => setImmediate(res));
  assert.equal(second, true);
});
