/**
 * @module config
 * The public surface of config/: loadConfig (argv + env + file → frozen Config, or every error),
 * the SCHEMA table of all tunables (the CLI builds its usage text from it), describeConfig for
 * `check-config`, and the value helpers other folders need to speak the same syntax
 * (host:port formatting, "did you mean"). Other folders import from here, never deeper.
 */
export { loadConfig, type LoadInput, type LoadResult } from './load.js';
export { describeConfig } from './describe.js';
export { SCHEMA, settingByName, BARE_NEWLINE_POLICIES, LOG_LEVELS, type Setting, type Kind, type ValueOf } from './schema.js';
export { formatHostPort, formatValue, parseHostPort } from './parse.js';
export { didYouMean } from './suggest.js';
export type { Config, HostPort, SmtpdLimits, SmtpdTimeouts } from './types.js';
