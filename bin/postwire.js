#!/usr/bin/env node
// The package's bin: the compiled CLI. `npm run build` (run by `npm start` and `npm test`) makes dist/.
// The CLI library never exits the process; here, at the edge, a failure code ends it at once so
// that sockets a cut-short shutdown left open cannot keep the process alive.
import { runCli } from '../dist/src/cli/index.js';

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
if (code !== 0) process.exit(code);
