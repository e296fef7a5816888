/**
 * @module protocol/params
 * ESMTP parameters of MAIL FROM and RCPT TO (RFC 5321 §4.1.2 esmtp-param): SIZE (RFC 1870),
 * BODY (6152, 3030), SMTPUTF8 (6531), RET/ENVID/NOTIFY/ORCPT (3461, 6533), AUTH (4954); and the
 * xtext encodings they use, both ways.
 *
 * Who calls it: protocol/command parses with parseMailParams/parseRcptParams and formats with
 * formatMailParams/formatRcptParams; bounce may use decodeXtext/encodeXtext.
 *
 * Failure behaviour: parsing returns a ready Reply instead of throwing: 555 5.5.4 for a keyword
 * we do not know (RFC 5321 §4.1.1.11), 501 5.5.4 for a bad value or a repeated keyword.
 * Whether an extension is offered (BINARYMIME without CHUNKING, SMTPUTF8 disabled…) is the
 * session's decision, not this module's: it parses every parameter it knows.
 *
 * Trust: input is one decoded command line (valid UTF-8, no CR/LF). Keywords are
 * case-insensitive; enumerated values are normalised to upper case.
 */
import { Buffer } from 'node:buffer';
import { reply } from './reply.js';
import type { BodyType, DsnNotify, DsnRet, MailParams, RcptParams, Reply } from './types.js';

export type ParamsResult<T> = { readonly ok: true; readonly params: T } | { readonly ok: false; readonly reply: Reply };

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
/** A handler returns an error text for a bad value, or undefined after storing the value. */
type Handler<T> = (value: string | undefined, into: Mutable<T>) => string | undefined;

const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
/** esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531 §3.3). */
const VALUE = /^[\x21-\x3c\x3e-\x7e\u0080-\u{10FFFF}]+$/u;
const XTEXT = /^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*$/;
const MAX_ENVID = 100;

const MAIL_PARAMS: Readonly<Record<string, Handler<MailParams>>> = {
  SIZE: (v, p) => {
    if (v === undefined || !/^\d{1,20}$/.test(v) || !Number.isSafeInteger(Number(v))) return 'SIZE needs a decimal size';
    p.size = Number(v);
    return undefined;
  },
  BODY: (v, p) => {
    const body = v?.toUpperCase();
    if (body !== '7BIT' && body !== '8BITMIME' && body !== 'BINARYMIME') return 'BODY must be 7BIT, 8BITMIME or BINARYMIME';
    p.body = body satisfies BodyType;
    return undefined;
  },
  SMTPUTF8: (v, p) => {
    if (v !== undefined) return 'SMTPUTF8 takes no value';
    p.smtputf8 = true;
    return undefined;
  },
  RET: (v, p) => {
    const ret = v?.toUpperCase();
    if (ret !== 'FULL' && ret !== 'HDRS') return 'RET must be FULL or HDRS';
    p.ret = ret satisfies DsnRet;
    return undefined;
  },
  ENVID: (v, p) => {
    const envid = v === undefined || v.length > MAX_ENVID ? undefined : decodeXtext(v);
    if (envid === undefined || envid === '') return `ENVID must be xtext of at most ${MAX_ENVID} characters`;
    p.envid = envid;
    return undefined;
  },
  AUTH: (v, p) => {
    const auth = v === '<>' ? v : v === undefined ? undefined : decodeXtext(v);
    if (auth === undefined || auth === '') return 'AUTH must be xtext or <>';
    p.auth = auth;
    return undefined;
  },
};

const RCPT_PARAMS: Readonly<Record<string, Handler<RcptParams>>> = {
  NOTIFY: (v, p) => {
    const items = (v ?? '').toUpperCase().split(',');
    if (items.length === 1 && items[0] === 'NEVER') {
      p.notify = 'NEVER';
      return undefined;
    }
    const list: DsnNotify[] = [];
    for (const item of items) {
      if (item !== 'SUCCESS' && item !== 'FAILURE' && item !== 'DELAY') return 'NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY';
      if (!list.includes(item)) list.push(item);
    }
    p.notify = list;
    return undefined;
  },
  ORCPT: (v, p) => {
    const semi = v?.indexOf(';') ?? -1;
    if (v === undefined || semi < 1) return 'ORCPT must be addr-type;address';
    const addrType = v.slice(0, semi);
    const raw = v.slice(semi + 1);
    const address = /^utf-8$/i.test(addrType) ? decodeUtf8AddrXtext(raw) : decodeXtext(raw);
    if (!/^[A-Za-z0-9-]+$/.test(addrType) || address === undefined || address === '') return 'ORCPT address is not valid xtext';
    p.orcpt = { addrType, address };
    return undefined;
  },
};

export function parseMailParams(text: string): ParamsResult<MailParams> {
  return parseParams(text, MAIL_PARAMS);
}

export function parseRcptParams(text: string): ParamsResult<RcptParams> {
  return parseParams(text, RCPT_PARAMS);
}

/** `text` is everything after the path: zero or more space-separated `KEY[=value]`. */
function parseParams<T>(text: string, table: Readonly<Record<string, Handler<T>>>): ParamsResult<T> {
  const into = {} as Mutable<T>;
  const seen = new Set<string>();
  for (const param of text.split(' ').filter((p) => p !== '')) {
    const eq = param.indexOf('=');
    const keyword = (eq < 0 ? param : param.slice(0, eq)).toUpperCase();
    const value = eq < 0 ? undefined : param.slice(eq + 1);
    if (!KEYWORD.test(keyword) || (value !== undefined && !VALUE.test(value))) {
      return { ok: false, reply: reply(501, '5.5.4', `Malformed parameter: ${clip(param)}`) };
    }
    const handler = Object.hasOwn(table, keyword) ? table[keyword] : undefined;
    if (handler === undefined) return { ok: false, reply: reply(555, '5.5.4', `Unsupported parameter: ${clip(keyword)}`) };
    if (seen.has(keyword)) return { ok: false, reply: reply(501, '5.5.4', `Duplicate parameter: ${keyword}`) };
    seen.add(keyword);
    const problem = handler(value, into);
    if (problem !== undefined) return { ok: false, reply: reply(501, '5.5.4', problem) };
  }
  return { ok: true, params: into };
}

function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/** RFC 3461 §4: `+XX` escapes UTF-8 octets; undefined when malformed. */
export function decodeXtext(text: string): string | undefined {
  if (!XTEXT.test(text)) return undefined;
  if (!text.includes('+')) return text;
  const bytes = Buffer.from(text.replace(/\+([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1');
  return bytes.toString('utf8');
}

/** Escapes `+`, `=`, controls, space and every non-ASCII octet (as UTF-8). */
export function encodeXtext(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte > 0x20 && byte < 0x7f && byte !== 0x2b && byte !== 0x3d ? String.fromCharCode(byte) : `+${hex2(byte)}`;
  }
  return out;
}

/**
 * RFC 6533 utf-8-addr-xtext / utf-8-addr-unitext: QCHAR (printable ASCII but `+`, `=`, `\`), raw
 * UTF-8, and `\x{HEX}` for any code point.
 */
export function decodeUtf8AddrXtext(text: string): string | undefined {
  let out = '';
  const re = /\\x\{([0-9A-Fa-f]{1,6})\}|([\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e\u0080-\u{10FFFF}])/uy;
  while (re.lastIndex < text.length) {
    const m = re.exec(text);
    if (!m) return undefined;
    if (m[2] !== undefined) {
      out += m[2];
      continue;
    }
    const cp = parseInt(m[1] ?? '', 16);
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return undefined;
    out += String.fromCodePoint(cp);
  }
  return out;
}

/** The utf-8-addr-xtext form: pure ASCII, anything outside QCHAR as `\x{HEX}`. */
export function encodeUtf8AddrXtext(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    const qchar = cp >= 0x21 && cp <= 0x7e && cp !== 0x2b && cp !== 0x3d && cp !== 0x5c;
    out += qchar ? ch : `\\x{${cp.toString(16).toUpperCase()}}`;
  }
  return out;
}

function hex2(byte: number): string {
  return byte.toString(16).toUpperCase().padStart(2, '0');
}

/** `BODY=8BITMIME SIZE=12 …` in a fixed order; '' when there are none. */
export function formatMailParams(p: MailParams): string {
  const out: string[] = [];
  if (p.body !== undefined) out.push(`BODY=${p.body}`);
  if (p.size !== undefined) out.push(`SIZE=${p.size}`);
  if (p.smtputf8) out.push('SMTPUTF8');
  if (p.ret !== undefined) out.push(`RET=${p.ret}`);
  if (p.envid !== undefined) out.push(`ENVID=${encodeXtext(p.envid)}`);
  if (p.auth !== undefined) out.push(`AUTH=${p.auth === '<>' ? '<>' : encodeXtext(p.auth)}`);
  if (p.requireTls) out.push('REQUIRETLS');
  return out.join(' ');
}

/** `NOTIFY=… ORCPT=…`; '' when there are none. */
export function formatRcptParams(p: RcptParams): string {
  const out: string[] = [];
  if (p.notify !== undefined) out.push(`NOTIFY=${p.notify === 'NEVER' ? 'NEVER' : p.notify.join(',')}`);
  if (p.orcpt !== undefined) {
    const { addrType, address } = p.orcpt;
    const encoded = /^utf-8$/i.test(addrType) ? encodeUtf8AddrXtext(address) : encodeXtext(address);
    out.push(`ORCPT=${addrType};${encoded}`);
  }
  return out.join(' ');
}
