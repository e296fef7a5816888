// Summarise a V8 .cpuprofile (node --cpu-prof): self time by function and by file, top N.
// `node scripts/cpuprofile-summary.mjs FILE.cpuprofile [N]`. Used for the "where the time goes"
// figures in docs/benchmarks.md and docs/queue.md.
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/cpuprofile-summary.mjs FILE.cpuprofile [N]');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = profile.timeDeltas;
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fn = new Map();
const files = new Map();
for (const [id, us] of self) {
  const n = byId.get(id);
  const cf = n.callFrame;
  const where = cf.url ? cf.url.replace(/^file:\/\//, '').replace(/.*\/node_modules\//, 'node_modules/').replace(/.*\/dist\//, '') : '(native)';
  const key = `${cf.functionName || '(anonymous)'} ${where}:${cf.lineNumber + 1}`;
  fn.set(key, (fn.get(key) ?? 0) + us);
  const group = where.startsWith('node_modules/') ? where.split('/').slice(0, 2).join('/') : where.startsWith('node:') ? 'node:internal' : where;
  files.set(group, (files.get(group) ?? 0) + us);
}
const pct = (us) => `${((us / total) * 100).toFixed(1)}%`;
console.log(`total sampled ${(total / 1e6).toFixed(2)} s`);
console.log('\nself time by file/package:');
for (const [k, us] of [...files].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us).padStart(6)}  ${k}`);
console.log('\nself time by function:');
for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(us).padStart(6)}  ${k}`);
