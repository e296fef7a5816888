/**
 * @module config/docs.test
 * docs/configuration.md is generated from the schema (config/reference.ts, `npm run docs:config`):
 * the committed file must be exactly what the generator gives today, so a setting added, renamed
 * or re-documented without regenerating fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configurationReference } from './reference.js';
import { SCHEMA } from './schema.js';

test('docs/configuration.md is exactly what `npm run docs:config` generates', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url)), 'utf8');
  assert.ok(doc === configurationReference(), 'docs/configuration.md is stale: run `npm run docs:config` and commit the result');
});

test('the generated reference lists every setting with its reload behaviour', () => {
  const text = configurationReference();
  for (const s of SCHEMA) assert.ok(text.includes(`\`${s.flag} `), s.flag);
  assert.match(text, /\| `--max-message-size SIZE` \| `50MiB` \| live \|/);
  assert.match(text, /\| `--listen HOST:PORT` \| `127\.0\.0\.1:2525` \| restart \|/);
});

test('the example config file in contrib/ is valid', async () => {
  const { loadConfig } = await import('./load.js');
  const path = fileURLToPath(new URL('../../../contrib/postwire.toml', import.meta.url));
  const r = loadConfig({ argv: ['--config', path], env: {}, hostname: 'mx.example.test' });
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  assert.equal(r.config.routes.length, 1);
});
