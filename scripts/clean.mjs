// Removes dist/ before every build: tsc never deletes the output of a source that was removed or
// renamed, and the test runner runs every dist/**/*.test.js, so a stale compiled test would keep
// running (and counting) locally while a fresh clone no longer has it.
import { rmSync } from 'node:fs';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
