// Part of `npm run build`: the web page's static files (src/admin/web/) are not TypeScript, so tsc
// does not emit them; copy them beside the compiled admin server (dist/src/admin/web/), which
// reads them from beside itself. No bundler, no transform: the files are served as written.
import { cpSync, rmSync } from 'node:fs';

rmSync('dist/src/admin/web', { recursive: true, force: true });
cpSync('src/admin/web', 'dist/src/admin/web', { recursive: true });
