/**
 * @module config/parse
 * Turns one raw value of one setting (a flag's text, an environment variable, a JSON value from
 * a config file) into its typed value, or into a reason that quotes the bad value and says what
 * was expected. The caller (load.ts) prefixes the reason with where the value came from, so the
 * whole message reads `--max-recipients: "abc" is not a whole number (expected 1..100000)`.
 *
 * Also the inverse, formatValue, used by describeConfig and the usage text, so that what
 * `check-config` prints can be pasted back as flags and parses to the same value.
 *
 * Lists accept commas everywhere (`--relay-from a,b`, `POSTWIRE_LISTEN=a,b`, `["a", "b,c"]`),
 * because an environment variable cannot repeat. Nothing here throws or does I/O.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatDuration, formatSize, parseCidrList, parseDuration, parseSize } from '../util/index.js';
import type { Kind, Setting, SettingOf, ValueOf } from './schema.js';
import type { HostPort } from './types.js';

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };
export type SettingValue = ValueOf[Kind];

/** A value as a source gave it: text (flags, env; repeated flags give several) or parsed JSON. */
export type Raw = { readonly from: 'text'; readonly texts: readonly string[] } | { readonly from: 'json'; readonly value: unknown };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = (reason: string): { readonly ok: false; readonly reason: string } => ({ ok: false, reason });
const q = (text: string): string => JSON.stringify(text);

const LIST_KINDS: ReadonlySet<Kind> = new Set(['hostport-list', 'cidr-list', 'duration-list']);

export function parseSetting(setting: Setting, raw: Raw): Parsed<SettingValue> {
  const texts = toTexts(setting, raw);
  if (!texts.ok) return texts;
  if (LIST_KINDS.has(setting.kind)) return parseList(setting, texts.value);
  const [text] = texts.value;
  if (texts.value.length !== 1 || text === undefined) return fail('takes one value, not a list');
  return parseScalar(setting, text);
}

function toTexts(setting: Setting, raw: Raw): Parsed<readonly string[]> {
  if (raw.from === 'text') return ok(raw.texts);
  const v = raw.value;
  if (typeof v === 'string') return ok([v]);
  if (typeof v === 'number' && (setting.kind === 'integer' || setting.kind === 'size')) return ok([String(v)]);
  if (typeof v === 'number' && (setting.kind === 'duration' || setting.kind === 'duration-list')) {
    return fail(`${v} has no unit (write a string such as "${v}s" or "${v}ms")`);
  }
  if (Array.isArray(v) && LIST_KINDS.has(setting.kind)) {
    const items: readonly unknown[] = v;
    const strings = items.filter((x): x is string => typeof x === 'string');
    if (strings.length !== items.length) return fail(`holds a value that is not a string (expected ${example(setting)})`);
    return ok(strings);
  }
  return fail(`is ${jsonKind(v)} (expected ${example(setting)})`);
}

function jsonKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function example(setting: Setting): string {
  if (setting.kind === 'integer' || setting.kind === 'size') return `a number or a string like ${q(formatValue(setting, setting.default))}`;
  if (LIST_KINDS.has(setting.kind)) return `a list of strings or one comma-separated string`;
  return `a string (${setting.metavar})`;
}

function parseList(setting: Setting, texts: readonly string[]): Parsed<SettingValue> {
  const items = texts.flatMap((t) => t.split(',')).map((t) => t.trim());
  const joined = texts.join(',');
  if (joined.trim() === '') {
    // No networks may relay is a policy; no listener or no retry delay is a mistake.
    if (setting.kind === 'cidr-list') return ok([]);
    return fail(`${q(joined)} is empty (expected at least one ${setting.metavar.replace(/,\.\.\.$/, '')})`);
  }
  if (items.includes('')) return fail(`${q(joined)} has an empty item (a stray comma?)`);
  switch (setting.kind) {
    case 'hostport-list':
      return collect(items, (t) => parseHostPort(t, setting));
    case 'duration-list':
      return collect(items, (t) => parseDurationIn(t, setting));
    case 'cidr-list': {
      const r = parseCidrList(items);
      return r.ok ? ok(r.value.map((c) => c.text)) : r;
    }
    default:
      return fail(`is not a list setting`);
  }
}

function collect<T>(items: readonly string[], parse: (text: string) => Parsed<T>): Parsed<readonly T[]> {
  const out: T[] = [];
  for (const item of items) {
    const r = parse(item);
    if (!r.ok) return r;
    out.push(r.value);
  }
  return ok(out);
}

function parseScalar(setting: Setting, text: string): Parsed<SettingValue> {
  switch (setting.kind) {
    case 'string':
      return text.trim() === '' ? fail(`is empty (expected ${setting.metavar})`) : ok(text);
    case 'hostname':
      return parseHostname(text);
    case 'hostport':
      return parseHostPort(text, setting);
    case 'hostport-or-off':
      return text === 'off' ? ok('off' as const) : parseHostPort(text, setting, ' or "off"');
    case 'duration':
      return parseDurationIn(text, setting);
    case 'size':
      return parseSizeIn(text, setting);
    case 'integer':
      return parseInteger(text, setting);
    case 'enum':
      return setting.values.includes(text) ? ok(text) : fail(`${q(text)} is not one of ${setting.values.join(', ')}`);
    default:
      return fail('is a list setting');
  }
}

function parseInteger(text: string, s: SettingOf<'integer'>): Parsed<number> {
  const range = `expected ${s.min}..${s.max}`;
  if (!/^\s*-?\d+\s*$/.test(text)) return fail(`${q(text)} is not a whole number (${range})`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < s.min || n > s.max) return fail(`${text.trim()} is out of range (${range})`);
  return ok(n);
}

function parseDurationIn(text: string, s: SettingOf<'duration'> | SettingOf<'duration-list'>): Parsed<number> {
  const r = parseDuration(text);
  if (!r.ok) return fail(`${q(text)} ${r.reason}`);
  if (r.value < s.min) return fail(`${q(text)} is too short (at least ${formatDuration(s.min)})`);
  if (r.value > s.max) return fail(`${q(text)} is too long (at most ${formatDuration(s.max)})`);
  return r;
}

function parseSizeIn(text: string, s: SettingOf<'size'>): Parsed<number> {
  const r = parseSize(text);
  if (!r.ok) return fail(`${q(text)} ${r.reason}`);
  if (r.value < s.min) return fail(`${q(text)} is too small (at least ${formatSize(s.min)})`);
  if (r.value > s.max) return fail(`${q(text)} is too large (at most ${formatSize(s.max)})`);
  return r;
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

/** An RFC 1035 host name (letters, digits, hyphens; no underscore: EHLO peers reject it). */
export function isHostName(text: string): boolean {
  return text.length <= 253 && text.split('.').every((label) => LABEL.test(label));
}

/** Our own name for EHLO and Received:: a host name or an address literal (`[192.0.2.1]`). */
function parseHostname(text: string): Parsed<string> {
  if (isHostName(text)) return ok(text);
  const lit = /^\[(?:IPv6:)?(.*)\]$/.exec(text)?.[1];
  if (lit !== undefined && (isIPv4(lit) || (isIPv6(lit) && text.startsWith('[IPv6:')))) return ok(text);
  return fail(`${q(text)} is not a host name (letters, digits, hyphens and dots; or an address literal like [192.0.2.1])`);
}

const HOSTPORT_HINT = 'e.g. 127.0.0.1:2525, [::1]:2525 or mail.example.com:25';

/** `host:port`, `[v6]:port`; the host comes back without brackets. */
export function parseHostPort(
  text: string,
  rules: { readonly portZero: boolean; readonly ipOnly: boolean },
  alternative = '',
): Parsed<HostPort> {
  const bad = (why: string): Parsed<HostPort> => fail(`${q(text)} is not HOST:PORT${alternative} (${why}; ${HOSTPORT_HINT})`);
  const m = /^\[([^\]]*)\]:([^:]*)$/.exec(text) ?? /^([^:[\]]*):([^:]*)$/.exec(text);
  if (m === null) {
    if (isIPv6(text) || /^[^[].*:.*:/.test(text)) return bad('an IPv6 address goes in brackets');
    if (!text.includes(':')) return bad('the port is missing');
    return bad('malformed');
  }
  const [, host = '', portText = ''] = m;
  const bracketed = text.startsWith('[');
  if (bracketed && (!isIPv6(host) || host.includes('%'))) return bad(`"${host}" is not an IPv6 address`);
  if (host === '') return bad('the host is missing; use 0.0.0.0 or [::] for all addresses');
  if (!bracketed && !isIPv4(host) && (/^[\d.]+$/.test(host) || !isHostName(host))) {
    return bad(`"${host}" is neither an IP address nor a host name`);
  }
  if (rules.ipOnly && !isIPv4(host) && !isIPv6(host)) return fail(`${q(text)} needs an IP address, not a host name`);
  const min = rules.portZero ? 0 : 1;
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < min || Number(portText) > 65_535) {
    return bad(`port "${portText}" is not a number ${min}..65535`);
  }
  return ok({ host, port: Number(portText) });
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** The flag-syntax spelling of a value; `(none)` for an unset optional setting. */
export function formatValue(setting: Setting, value: SettingValue | undefined): string {
  if (value === undefined) return '(none)';
  if (!isList(value)) return formatItem(setting, value);
  const items: readonly (HostPort | string | number)[] = value;
  return items.map((item) => formatItem(setting, item)).join(',');
}

function isList(value: SettingValue): value is Extract<SettingValue, readonly unknown[]> {
  return Array.isArray(value);
}

function formatItem(setting: Setting, item: HostPort | string | number): string {
  if (typeof item === 'object') return formatHostPort(item);
  if (typeof item === 'string') return item;
  if (setting.kind === 'duration' || setting.kind === 'duration-list') return formatDuration(item);
  if (setting.kind === 'size') return formatSize(item);
  return String(item);
}
