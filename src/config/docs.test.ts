import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SCHEMA } from './schema.js';

test('docs/configuration.md documents every setting of the schema', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url)), 'utf8');
  const missing = SCHEMA.map((s) => s.flag).filter((flag) => !doc.includes(`\`${flag}`));
  assert.deepEqual(missing, [], 'settings missing from docs/configuration.md');
});
