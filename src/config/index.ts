/**
 * @module config
 * The public surface of config/, the only module that turns argv, environment and a config file
 * into settings. Other folders import from here, never deeper (scripts/check-imports.mjs).
 *
 * - loadConfig: argv + env + file → a deeply frozen Config, or every error, each naming the
 *   setting as the operator wrote it (`--max-recipients`, `POSTWIRE_SPOOL`, `file: key "x"`).
 * - SCHEMA: the table of every tunable; the CLI builds its usage text from it.
 * - describeConfig: the effective configuration as `name = value` lines (check-config).
 * - formatHostPort / parseHostPort / formatValue / didYouMean: so other folders (the CLI today,
 *   admin tomorrow) speak the same syntax and make the same suggestions.
 * Config is data only: nothing here opens sockets or files other than the --config file.
 */
export { isLoopback, loadConfig, type LoadInput, type LoadResult } from './load.js';
export { describeConfig } from './describe.js';
export { planReload, type ReloadPlan } from './reload.js';
export { configurationReference } from './reference.js';
export { SCHEMA, settingByName, BARE_NEWLINE_POLICIES, OUTBOUND_TLS_POLICIES, LOG_LEVELS, LOG_FORMATS, SECTIONS, type Section, type Setting, type Kind, type ValueOf } from './schema.js';
export { formatHostPort, formatValue, parseHostPort } from './parse.js';
export { didYouMean } from './suggest.js';
export { DKIM_DEFAULT_HEADERS, dkimKeyWeakness } from './dkim.js';
export type { AbuseLimits, Config, DeliverySettings, DkimCanonicalization, DkimKeySetting, HostPort, RateLimit, RouteSetting, SmtpdLimits, SmtpdTimeouts } from './types.js';
export { defaultRate, formatRate, parseRate, rateLimit, defaultBurst, RATE_HINT } from './rate.js';
