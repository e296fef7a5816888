/**
 * @module config/load
 * loadConfig: argv + environment + (optional) config file → one deeply frozen Config, or every
 * error found, each naming the setting as the operator wrote it and what would fix it.
 *
 * Precedence, lowest first: schema defaults ← POSTWIRE_* environment ← the --config file (TOML,
 * or JSON by its .json extension: config/file.ts; keys are flag names) ← command-line flags. A later source replaces a value whole;
 * lists are not merged. Every source is validated, including values a later source overrides:
 * a bad value lying in the environment is a bug waiting for the day the flag is dropped.
 *
 * Strict everywhere: an unknown flag, an unknown POSTWIRE_* variable, an unknown file key, a
 * non-repeatable flag given twice, or any use of a designed-but-unbuilt feature (schema
 * `unavailable`) is an error, never ignored. An empty environment variable counts as unset
 * (container tooling writes `VAR=` to mean "not set").
 *
 * Callers: cli/ only; it passes process.env and os.hostname() in, so this module reads no ambient
 * state except the config file it is pointed at (relative paths resolve against the cwd, as do
 * relative paths inside it). Never throws for bad input; a throw here is a bug.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatHostPort, parseSetting, type Raw, type SettingValue } from './parse.js';
import {
  BARE_NEWLINE_POLICIES,
  LOG_LEVELS, LOG_FORMATS, AMBIGUOUS_POLICIES, DELIVERY_MODES, LONG_LINE_POLICIES, AUTH_WITHOUT_TLS, ON_OFF,
  OUTBOUND_TLS_POLICIES, MTA_STS_MODES,
  SCHEMA,
  settingByEnv,
  settingByName,
  type Kind,
  type Setting,
  type ValueOf,
} from './schema.js';
import { didYouMean } from './suggest.js';
import { parseRate } from './rate.js';
import type { Config, DkimKeySetting, RouteSetting } from './types.js';
import { parseConfigText } from './file.js';

export interface LoadInput {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The system host name, default for --hostname (cli passes os.hostname()). */
  readonly hostname: string;
}

export type LoadResult = { readonly ok: true; readonly config: Config } | { readonly ok: false; readonly errors: string[] };

/** One source's values, and how to name a setting in an error from that source. */
interface Layer {
  readonly raws: ReadonlyMap<Setting, Raw>;
  label(setting: Setting): string;
}

const ENV_PREFIX = 'POSTWIRE_';

export function loadConfig(input: LoadInput): LoadResult {
  const errors: string[] = [];
  const flags = readFlags(input.argv, errors);
  const env = readEnv(input.env, errors);
  const routes: RouteSetting[] = [];
  const dkim: DkimKeySetting[] = [];
  const file = readConfigFile([env, flags], errors, routes, dkim);
  const layers = file === undefined ? [env, flags] : [env, file, flags];
  const { values, labels } = resolve(layers, input.hostname, errors);
  if (errors.length === 0) crossCheck(values, labels, errors);
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, config: deepFreeze({ ...assemble(values), routes, dkim }) };
}

function readFlags(argv: readonly string[], errors: string[]): Layer {
  const texts = new Map<Setting, string[]>();
  const options = Object.fromEntries(SCHEMA.map((s) => [s.name, { type: 'string', multiple: true } as const]));
  // strict: false so that every problem is collected, not just the first; the loop below is the strictness.
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  let afterUnknown = false;
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      // `--bogus value`: the value of an unknown flag is not worth a second error.
      if (!afterUnknown) errors.push(`unexpected argument ${JSON.stringify(token.value)} (settings are flags: --name VALUE)`);
      afterUnknown = false;
      continue;
    }
    const setting = settingByName(token.name);
    afterUnknown = setting === undefined && token.value === undefined;
    if (setting === undefined) {
      errors.push(`${token.rawName}: unknown flag${hint(didYouMean(token.name, SCHEMA.map((s) => s.name)), '--')}`);
    } else if (token.value === undefined) {
      errors.push(`${token.rawName}: needs a value (${setting.metavar})`);
    } else if (!token.inlineValue && token.value.startsWith('-')) {
      errors.push(`${token.rawName}: needs a value (${setting.metavar}), got the flag ${JSON.stringify(token.value)}` +
        ` (write ${token.rawName}=${token.value} if that is the value)`);
    } else {
      texts.set(setting, [...(texts.get(setting) ?? []), token.value]);
    }
  }
  const raws = new Map<Setting, Raw>();
  for (const [setting, values] of texts) {
    if (values.length > 1 && !setting.repeatable) {
      const repeatable = SCHEMA.filter((s) => s.repeatable).map((s) => s.flag).join(', ');
      errors.push(`${setting.flag}: given ${values.length} times (only ${repeatable} may be repeated)`);
    } else {
      raws.set(setting, { from: 'text', texts: values });
    }
  }
  return { raws, label: (s) => s.flag };
}

function hint(suggestion: string | undefined, prefix = ''): string {
  return suggestion === undefined ? '' : ` (did you mean ${prefix}${suggestion}?)`;
}

function readEnv(env: Readonly<Record<string, string | undefined>>, errors: string[]): Layer {
  const raws = new Map<Setting, Raw>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined || value === '') continue;
    const setting = settingByEnv(name);
    if (setting === undefined) {
      errors.push(`${name}: unknown setting${hint(didYouMean(name, SCHEMA.map((s) => s.env)))}`);
      continue;
    }
    raws.set(setting, { from: 'text', texts: [value] });
  }
  return { raws, label: (s) => s.env };
}

/**
 * The file named by --config (or POSTWIRE_CONFIG; the flag wins), as a layer; undefined when none
 * is named or it cannot be used (the error is recorded). An empty name is left to resolve(),
 * which reports it like any other empty value.
 */
function readConfigFile(named: readonly Layer[], errors: string[], routes: RouteSetting[], dkim: DkimKeySetting[]): Layer | undefined {
  const setting = settingByName('config');
  if (setting === undefined) throw new Error('config: the schema has no "config" setting');
  let found: { path: string; label: string } | undefined;
  for (const layer of named) {
    const raw = layer.raws.get(setting);
    const path = raw?.from === 'text' ? raw.texts[0] : undefined;
    if (path !== undefined && path.trim() !== '') found = { path, label: layer.label(setting) };
  }
  if (found === undefined) return undefined;
  const { path, label } = found;
  const text = readText(path, label, errors);
  if (text === undefined) return undefined;
  const file = parseConfigText(path, text, errors);
  if (file === undefined) return undefined;
  routes.push(...file.routes);
  dkim.push(...file.dkim);
  return { raws: file.raws, label: file.label };
}

function readText(path: string, label: string, errors: string[]): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    errors.push(`${label}: cannot read ${JSON.stringify(path)}: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}

interface Resolved {
  readonly values: Map<string, SettingValue | undefined>;
  /** Where each non-default value came from, for cross-setting errors. */
  readonly labels: Map<string, string>;
}

function resolve(layers: readonly Layer[], hostname: string, errors: string[]): Resolved {
  const values = new Map<string, SettingValue | undefined>();
  const labels = new Map<string, string>();
  for (const setting of SCHEMA) {
    for (const layer of layers) {
      const raw = layer.raws.get(setting);
      if (raw === undefined) continue;
      const label = layer.label(setting);
      if (setting.unavailable !== undefined) {
        errors.push(`${label}: ${setting.unavailable}`);
        continue;
      }
      const parsed = parseSetting(setting, raw);
      if (!parsed.ok) {
        errors.push(`${label}: ${parsed.reason}`);
        continue;
      }
      values.set(setting.name, parsed.value);
      labels.set(setting.name, label);
    }
    if (!values.has(setting.name)) values.set(setting.name, defaultOf(setting, hostname, errors));
  }
  return { values, labels };
}

function defaultOf(setting: Setting, hostname: string, errors: string[]): SettingValue | undefined {
  if (setting.kind !== 'hostname') return setting.default;
  const name = setting.default({ hostname });
  const parsed = parseSetting(setting, { from: 'text', texts: [name] });
  if (parsed.ok) return parsed.value;
  // The machine's own name can be unusable (containers, underscores): say whose it is.
  errors.push(`${setting.flag}: the system host name ${parsed.reason}; set ${setting.flag} or ${setting.env}`);
  return undefined;
}

/** Rules that involve two settings, or two items of one list. */
function crossCheck(values: ReadonlyMap<string, SettingValue | undefined>, labels: ReadonlyMap<string, string>, errors: string[]): void {
  const listen = typed(values, 'listen', 'hostport-list');
  const seen = new Set<string>();
  for (const hp of listen) {
    const text = formatHostPort(hp);
    // Port 0 asks the kernel for a fresh port each time, so it never collides.
    if (hp.port !== 0 && seen.has(text)) errors.push(`${labels.get('listen') ?? '--listen'}: ${text} is listed twice`);
    seen.add(text);
  }
  const queue = optional(values, 'queue', 'string');
  if (queue !== undefined && !/^postgres(ql)?:\/\/./.test(queue)) {
    errors.push(`${labels.get('queue') ?? '--queue'}: ${JSON.stringify(queue)} is not a postgres:// URL (the embedded queue is --spool DIR)`);
  }
  const schema = typed(values, 'queue-schema', 'string');
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    errors.push(`${labels.get('queue-schema') ?? '--queue-schema'}: ${JSON.stringify(schema)} is not a schema name (lower-case letters, digits and _, at most 63)`);
  }
  const node = optional(values, 'node-name', 'string');
  if (node !== undefined && !/^[\x21-\x7e]{1,40}$/.test(node)) {
    errors.push(`${labels.get('node-name') ?? '--node-name'}: ${JSON.stringify(node)} must be 1 to 40 visible ASCII characters`);
  }
  const rate = typed(values, 'destination-rate', 'string');
  const parsedRate = parseRate(rate);
  if (!parsedRate.ok) errors.push(`${labels.get('destination-rate') ?? '--destination-rate'}: ${parsedRate.reason}`);
  else if (parsedRate.perMinute === 'unlimited' && typed(values, 'destination-burst', 'integer') !== 0) {
    errors.push(`${labels.get('destination-burst') ?? '--destination-burst'}: a burst needs a --destination-rate (it is unlimited)`);
  }
  const admin = typed(values, 'admin', 'hostport-or-off');
  if (admin !== 'off' && admin.port !== 0 && seen.has(formatHostPort(admin))) {
    errors.push(`${labels.get('admin') ?? '--admin'}: ${formatHostPort(admin)} is also an SMTP --listen address`);
  }
  const cert = optional(values, 'tls-cert', 'string');
  const key = optional(values, 'tls-key', 'string');
  if ((cert === undefined) !== (key === undefined)) {
    const [given, missing] = cert === undefined ? ['tls-key', '--tls-cert'] : ['tls-cert', '--tls-key'];
    errors.push(`${labels.get(given) ?? `--${given}`}: needs ${missing} too (the certificate and its private key)`);
  }
  const submission = optional(values, 'submission', 'hostport');
  if (submission !== undefined && cert === undefined) {
    errors.push(`${labels.get('submission') ?? '--submission'}: the implicit-TLS listener needs --tls-cert and --tls-key`);
  }
  if (submission !== undefined && submission.port !== 0 && seen.has(formatHostPort(submission))) {
    errors.push(`${labels.get('submission') ?? '--submission'}: ${formatHostPort(submission)} is also an SMTP --listen address`);
  }
  if (typed(values, 'sender-login-match', 'enum') === 'on' && optional(values, 'users', 'string') === undefined) {
    errors.push(`${labels.get('sender-login-match') ?? '--sender-login-match'}: "on" needs --users (the addresses are in the user file)`);
  }
  // The admin API can delete and bounce mail: off loopback, it must ask for a token.
  if (admin !== 'off' && !isLoopback(admin.host) && optional(values, 'admin-token', 'string') === undefined) {
    errors.push(`${labels.get('admin') ?? '--admin'}: ${formatHostPort(admin)} is not a loopback address, so the admin API needs --admin-token (or POSTWIRE_ADMIN_TOKEN)`);
  }
  // The trust store is read at start: a missing file must stop the start, not every verify later.
  const ca = optional(values, 'tls-ca-file', 'string');
  if (ca !== undefined) {
    const label = labels.get('tls-ca-file') ?? '--tls-ca-file';
    try {
      if (!readFileSync(ca, 'utf8').includes('-----BEGIN CERTIFICATE-----')) errors.push(`${label}: ${ca} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    } catch (err) {
      errors.push(`${label}: ${ca} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
}

/** 127.0.0.0/8, ::1 (and its IPv4-mapped form of 127/8) and `localhost`: reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * The one place a table-driven value meets its static type. parseSetting produced the value for
 * this setting's kind, so the kind check is an invariant: failing it is a schema bug, and crashes.
 */
function typed<K extends Kind>(values: ReadonlyMap<string, SettingValue | undefined>, name: string, kind: K): ValueOf[K] {
  const value = optional(values, name, kind);
  if (value === undefined) throw new Error(`config: setting ${name} has no value and no default`);
  return value;
}

function optional<K extends Kind>(values: ReadonlyMap<string, SettingValue | undefined>, name: string, kind: K): ValueOf[K] | undefined {
  const setting = settingByName(name);
  if (setting?.kind !== kind) throw new Error(`config: setting ${name} is not of kind ${kind}`);
  return values.get(name) as ValueOf[K] | undefined;
}

function oneOf<T extends string>(allowed: readonly T[], value: string): T {
  const found = allowed.find((a) => a === value);
  if (found === undefined) throw new Error(`config: ${value} is not one of ${allowed.join(', ')}`);
  return found;
}

function assemble(v: ReadonlyMap<string, SettingValue | undefined>): Omit<Config, 'routes' | 'dkim'> {
  return {
    listen: typed(v, 'listen', 'hostport-list'),
    spool: typed(v, 'spool', 'string'),
    queue: optional(v, 'queue', 'string'),
    queueSchema: typed(v, 'queue-schema', 'string'),
    queueConnections: typed(v, 'queue-connections', 'integer'),
    nodeName: optional(v, 'node-name', 'string'),
    smarthost: optional(v, 'smarthost', 'hostport'),
    dns: optional(v, 'dns', 'hostport'),
    retry: typed(v, 'retry', 'duration-list'),
    maxAge: typed(v, 'max-age', 'duration'),
    hostname: typed(v, 'hostname', 'hostname'),
    admin: typed(v, 'admin', 'hostport-or-off'),
    adminToken: optional(v, 'admin-token', 'string'),
    relayFrom: typed(v, 'relay-from', 'cidr-list'),
    bareNewline: oneOf(BARE_NEWLINE_POLICIES, typed(v, 'bare-newline', 'enum')),
    limits: {
      maxConnections: typed(v, 'max-connections', 'integer'),
      maxConnectionsPerIp: typed(v, 'max-connections-per-ip', 'integer'),
      maxRecipients: typed(v, 'max-recipients', 'integer'),
      maxMessageSize: typed(v, 'max-message-size', 'size'),
      maxCommandLine: typed(v, 'max-command-line', 'integer'),
      maxBadCommands: typed(v, 'max-bad-commands', 'integer'),
      listenBacklog: typed(v, 'listen-backlog', 'integer'),
    },
    tls: {
      cert: optional(v, 'tls-cert', 'string'),
      key: optional(v, 'tls-key', 'string'),
    },
    submission: optional(v, 'submission', 'hostport'),
    auth: {
      users: optional(v, 'users', 'string'),
      withoutTls: oneOf(AUTH_WITHOUT_TLS, typed(v, 'auth-without-tls', 'enum')),
      senderLoginMatch: oneOf(ON_OFF, typed(v, 'sender-login-match', 'enum')),
      failuresPerIp: typed(v, 'auth-failures-per-ip', 'integer'),
      failuresPerUser: typed(v, 'auth-failures-per-user', 'integer'),
      failureWindow: typed(v, 'auth-failure-window', 'duration'),
      failureDelay: typed(v, 'auth-failure-delay', 'duration'),
      maxVerifications: typed(v, 'auth-verifications', 'integer'),
    },
    abuse: {
      exempt: typed(v, 'limits-exempt', 'cidr-list'),
      ipMessageRate: typed(v, 'ip-message-rate', 'integer'),
      ipRecipientRate: typed(v, 'ip-recipient-rate', 'integer'),
      userMessageRate: typed(v, 'user-message-rate', 'integer'),
      userRecipientRate: typed(v, 'user-recipient-rate', 'integer'),
      rateWindow: typed(v, 'rate-window', 'duration'),
      rateMaxClients: typed(v, 'rate-max-clients', 'integer'),
      tarpitAfter: typed(v, 'tarpit-after', 'integer'),
      tarpitDelay: typed(v, 'tarpit-delay', 'duration'),
      tarpitMaxDelay: typed(v, 'tarpit-max-delay', 'duration'),
      logRate: typed(v, 'limits-log-rate', 'integer'),
    },
    timeouts: {
      command: typed(v, 'command-timeout', 'duration'),
      data: typed(v, 'data-timeout', 'duration'),
      shutdownGrace: typed(v, 'shutdown-grace', 'duration'),
    },
    delivery: {
      mode: oneOf(DELIVERY_MODES, typed(v, 'delivery', 'enum')),
      mxPort: typed(v, 'mx-port', 'integer'),
      destinationConcurrency: typed(v, 'destination-concurrency', 'integer'),
      maxInFlight: typed(v, 'max-deliveries', 'integer'),
      destinationRate: typed(v, 'destination-rate', 'string'),
      destinationBurst: typed(v, 'destination-burst', 'integer'),
      ambiguous: oneOf(AMBIGUOUS_POLICIES, typed(v, 'ambiguous', 'enum')),
      longLines: oneOf(LONG_LINE_POLICIES, typed(v, 'long-lines', 'enum')),
      delayWarning: typed(v, 'delay-warning', 'duration'),
      keepDone: typed(v, 'keep-done', 'duration'),
      leaseTime: typed(v, 'lease-time', 'duration'),
    },
    outboundTls: {
      policy: oneOf(OUTBOUND_TLS_POLICIES, typed(v, 'tls-policy', 'enum')),
      caFile: optional(v, 'tls-ca-file', 'string'),
      mtaSts: oneOf(MTA_STS_MODES, typed(v, 'mta-sts', 'enum')),
      mtaStsPort: typed(v, 'mta-sts-port', 'integer'),
      mtaStsTimeout: typed(v, 'mta-sts-timeout', 'duration'),
      mtaStsMaxSize: typed(v, 'mta-sts-max-size', 'size'),
    },
    logLevel: oneOf(LOG_LEVELS, typed(v, 'log-level', 'enum')),
    logFormat: oneOf(LOG_FORMATS, typed(v, 'log-format', 'enum')),
    metricsDestinations: typed(v, 'metrics-destinations', 'integer'),
    dkimMaxHeaderSize: typed(v, 'dkim-max-header-size', 'size'),
  };
}

/** Copy, then freeze: a Config shares no object with the schema table or the caller. */
function deepFreeze<T>(value: T): T {
  return frozenCopy(value) as T;
}

function frozenCopy(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const items: readonly unknown[] | undefined = Array.isArray(value) ? value : undefined;
  const copy = items !== undefined
    ? items.map(frozenCopy)
    : Object.fromEntries(Object.entries(value).map(([k, x]) => [k, frozenCopy(x)]));
  return Object.freeze(copy);
}
