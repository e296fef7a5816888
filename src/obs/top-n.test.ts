import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TopN } from './top-n.js';

const view = (t: TopN): Record<string, number> =>
  Object.fromEntries(t.snapshot().map((c) => [`${c.destination}/${c.key}`, c.value]));

test('the N busiest destinations keep their label; the rest are summed as other', () => {
  const t = new TopN(2);
  for (let i = 0; i < 5; i++) t.add('a.test', 'delivered');
  for (let i = 0; i < 3; i++) t.add('b.test', 'deferred');
  t.add('c.test', 'delivered');
  t.add('d.test', 'bounced');
  assert.deepEqual(view(t), { 'a.test/delivered': 5, 'b.test/deferred': 3, 'other/delivered': 1, 'other/bounced': 1 });
});

test('a destination overtaken moves into other, and other never goes down', () => {
  const t = new TopN(1);
  t.add('a.test', 'delivered', 2);
  t.add('b.test', 'delivered', 1);
  assert.equal(view(t)['other/delivered'], 1);
  t.add('b.test', 'delivered', 2);
  assert.deepEqual(view(t), { 'b.test/delivered': 3, 'other/delivered': 2 });
});

test('N = 0 puts everything in other; the tracked set stays bounded', () => {
  const t = new TopN(0);
  t.add('a', 'x');
  assert.deepEqual(view(t), { 'other/x': 1 });
  const many = new TopN(2, 10);
  for (let i = 0; i < 1000; i++) many.add(`d${i}.test`, 'delivered', i % 7 === 0 ? 100 : 1);
  const total = many.snapshot().reduce((n, c) => n + c.value, 0);
  assert.equal(total, [...Array(1000).keys()].reduce((n, i) => n + (i % 7 === 0 ? 100 : 1), 0), 'nothing is lost by folding');
  assert.ok(many.snapshot().length <= 3);
});
