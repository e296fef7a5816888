// The import-boundary lint: each folder of src/ keeps the pledge in DESIGN.md §2 (also in
// ARCHITECTURE.md). Cross-folder imports go through the folder's index.ts; protocol/ stays pure.
// Test files (*.test.ts) and test/ are exempt: they wire real parts together on purpose.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve, sep } from 'node:path';

const SRC = resolve('src');

/** unit → units it may import (besides itself). A unit is a top folder, or queue/<backend>. */
const ALLOWED = {
  util: [],
  protocol: ['util'],
  queue: ['protocol', 'util'],
  'queue/sqlite': ['queue', 'util'],
  'queue/postgres': ['queue', 'util'],
  config: ['protocol', 'util'],
  obs: ['util'],
  cleanup: ['protocol', 'queue', 'config', 'obs', 'util'],
  smtpd: ['protocol', 'cleanup', 'config', 'obs', 'util'],
  delivery: ['protocol', 'config', 'obs', 'util'],
  bounce: ['protocol', 'util'],
  qmgr: ['queue', 'delivery', 'bounce', 'cleanup', 'config', 'obs', 'util'],
  api: [],
  admin: ['api', 'queue', 'qmgr', 'config', 'obs', 'util'],
  cli: ['api', 'config', 'util', 'main'],
  main: ['*'],
};
/** node builtins a unit must not touch: protocol is pure (bytes in, events out). */
const FORBIDDEN_BUILTINS = {
  protocol: ['net', 'tls', 'fs', 'fs/promises', 'dns', 'dns/promises', 'timers', 'timers/promises', 'child_process', 'dgram', 'http', 'https'],
  util: [],
  bounce: ['net', 'tls', 'fs', 'fs/promises', 'dns', 'dns/promises', 'child_process', 'http', 'https'],
  api: ['*'],
};
const FORBIDDEN_GLOBALS = { protocol: /\b(setTimeout|setInterval|setImmediate|process\.|Date\.now\(\)|new Date\(\))/ };

function unitOf(file) {
  const rel = relative(SRC, file).split(sep);
  if (rel.length === 1) return rel[0] === 'main.ts' ? 'main' : 'main';
  if (rel[0] === 'queue' && (rel[1] === 'sqlite' || rel[1] === 'postgres')) return `queue/${rel[1]}`;
  return rel[0];
}

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...walk(path));
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const problems = [];
const importRe = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
for (const file of walk(SRC)) {
  const text = readFileSync(file, 'utf8');
  const unit = unitOf(file);
  const where = relative(process.cwd(), file);
  const globals = FORBIDDEN_GLOBALS[unit];
  if (globals) {
    const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    const m = globals.exec(code);
    if (m) problems.push(`${where}: ${unit}/ must stay pure, found '${m[1]}'`);
  }
  for (const m of text.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    if (spec.startsWith('node:') || !spec.startsWith('.')) {
      const builtin = spec.replace(/^node:/, '');
      const banned = FORBIDDEN_BUILTINS[unit] ?? [];
      if (spec.startsWith('node:') && (banned.includes('*') || banned.includes(builtin))) {
        problems.push(`${where}: ${unit}/ must not import ${spec}`);
      }
      continue;
    }
    const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
    if (!target.startsWith(SRC + sep)) continue;
    const targetUnit = unitOf(target);
    if (targetUnit === unit) continue;
    const allowed = ALLOWED[unit];
    if (!allowed) { problems.push(`${where}: folder '${unit}' has no entry in the import table`); continue; }
    const sameTop = unit.split('/')[0] === targetUnit.split('/')[0];
    if (!allowed.includes('*') && !allowed.includes(targetUnit)) {
      problems.push(`${where}: ${unit}/ may not import ${targetUnit}/ (${spec})`);
      continue;
    }
    // Cross-folder imports use the folder's public surface, index.ts. queue backends may reach
    // store.ts / ids.ts of their own parent folder.
    const relTarget = relative(SRC, target).split(sep);
    const isIndex = relTarget[relTarget.length - 1] === 'index.ts';
    if (!isIndex && !sameTop && targetUnit !== 'main') {
      problems.push(`${where}: deep import ${spec}; import ${targetUnit}/index.js instead`);
    }
  }
}
if (problems.length > 0) {
  console.error(`check-imports: ${problems.length} boundary violation(s):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log('check-imports: import boundaries hold');
