/**
 * src/protocol/dot-simd.generated.ts holds the compiled bytes of dot-simd.wat (protocol/ may not
 * read files at run time, and `npm ci && npm start` must not need a WebAssembly toolchain). The
 * committed bytes must be exactly what the .wat compiles to today, so an edit of the .wat without
 * `npm run build:wasm` fails here instead of shipping the old machine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

test('dot-simd.generated.ts is what `npm run build:wasm` makes of dot-simd.wat', () => {
  const script = fileURLToPath(new URL('../../../scripts/build-wasm.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});
