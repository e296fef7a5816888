/**
 * @module config/describe.test
 * The schema table against Config (every key path resolves, every Config leaf has a setting),
 * the derived names, and describeConfig: its line format, and the round trip describe → flags
 * → loadConfig giving back the same Config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeConfig, loadConfig, SCHEMA, type Config } from './index.js';
import { readPath } from './describe.js';

function load(argv: readonly string[]): Config {
  const r = loadConfig({ argv, env: {}, hostname: 'mx.example.test' });
  if (!r.ok) assert.fail(r.errors.join('\n'));
  return r.config;
}

test('schema: names, flags and env names are derived and unique', () => {
  const names = SCHEMA.map((s) => s.name);
  assert.equal(new Set(names).size, names.length);
  for (const s of SCHEMA) {
    assert.equal(s.flag, `--${s.name}`);
    assert.equal(s.env, `POSTWIRE_${s.name.toUpperCase().replaceAll('-', '_')}`);
    assert.ok(s.doc.length > 0 && !s.doc.includes('\n'), s.name);
    assert.equal(s.repeatable, s.name === 'listen');
  }
});

test('schema: every key path exists in Config, and every Config leaf has a setting', () => {
  const config = load([]);
  const keys = SCHEMA.flatMap((s) => (s.key === undefined ? [] : [s.key]));
  for (const key of keys) assert.doesNotThrow(() => readPath(config, key), key);
  const leaves: string[] = [];
  const walk = (node: object, prefix: string): void => {
    for (const [k, v] of Object.entries(node)) {
      const path = prefix + k;
      if (typeof v === 'object' && v !== null && !Array.isArray(v) && !('host' in v)) walk(v, `${path}.`);
      else leaves.push(path);
    }
  };
  walk(config, '');
  // `routes` and `dkim` are structured and file-only (config/routes.ts, config/dkim.ts): the leaves with no flag.
  assert.deepEqual([...leaves].filter((l) => l !== 'routes' && l !== 'dkim').sort(), [...keys].sort());
});

test('describeConfig prints name = value in flag syntax', () => {
  const text = describeConfig(load(['--listen', '[::1]:25', '--listen', '127.0.0.1:0', '--smarthost', 'relay.example.net:587']));
  const lines = text.trimEnd().split('\n');
  assert.ok(lines.includes('listen = [::1]:25,127.0.0.1:0'));
  assert.ok(lines.includes('smarthost = relay.example.net:587'));
  assert.ok(lines.includes('dns = (none)'));
  assert.ok(lines.includes('retry = 1m,5m,15m,1h,4h'));
  assert.ok(lines.includes('max-age = 5d'));
  assert.ok(lines.includes('max-message-size = 50MiB'));
  assert.ok(lines.includes('relay-from = 127.0.0.0/8,::1/128'));
  assert.ok(lines.includes('admin = 127.0.0.1:8025'));
  assert.ok(lines.includes('bare-newline = normalize'));
  assert.ok(lines.every((l) => /^[a-z-]+ = \S/.test(l)), text);
  assert.ok(lines.includes('tls-cert = (none)'));
  assert.ok(!text.includes('config ='), 'settings Config does not hold are not printed');
});

test('describeConfig output fed back as flags gives the same config', () => {
  const original = load([
    '--listen', '[::1]:25', '--retry', '90s,2h', '--max-message-size', '1000', '--admin', 'off',
    '--relay-from', '10.0.0.0/8', '--command-timeout', '1h1ms', '--dns', '192.0.2.53:53',
  ]);
  const argv = describeConfig(original).trimEnd().split('\n').flatMap((line) => {
    const [name = '', value = ''] = line.split(' = ');
    return value === '(none)' ? [] : [`--${name}`, value];
  });
  assert.deepEqual(load(argv), original);
});

test('describeConfig never prints the admin token', () => {
  const text = describeConfig(load(['--admin-token', 'very-secret-value']));
  assert.ok(text.split('\n').includes('admin-token = (set, not shown)'), text);
  assert.ok(!text.includes('very-secret-value'));
  assert.ok(describeConfig(load([])).split('\n').includes('admin-token = (none)'));
});
