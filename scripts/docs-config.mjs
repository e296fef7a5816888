// Writes docs/configuration.md from the schema (src/config/reference.ts), compiled under dist/.
// `npm run docs:config` builds first; src/config/docs.test.ts fails when the committed file is stale.
import { writeFileSync } from 'node:fs';
import { configurationReference } from '../dist/src/config/reference.js';

writeFileSync('docs/configuration.md', configurationReference());
console.log('docs/configuration.md written');
