#!/usr/bin/env node
// The package's bin: the compiled CLI. `npm run build` (run by `npm start` and `npm test`) makes dist/.
import { runCli } from '../dist/src/cli/index.js';

process.exitCode = await runCli(process.argv.slice(2));
