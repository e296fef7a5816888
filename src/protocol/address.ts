/**
 * @module protocol/address
 * RFC 5321 §4.1.2 paths: `<>`, `<local@domain>`, `<@route,@route:local@domain>`, with RFC 6531
 * UTF-8 in local parts and domain labels, and the RCPT-only `<Postmaster>`.
 *
 * Who calls it: protocol/command for MAIL FROM and RCPT TO; anyone needing a path rendered for
 * the wire (formatPath) or a domain checked (isValidDomain).
 *
 * Failure behaviour: parse functions never throw; they return `{ok: false, reason}` with a short
 * human reason that command.ts puts in a 501 reply. Limits enforced (RFC 5321 §4.5.3.1, UTF-8
 * octets): local part 64 as written, domain 255, whole path 256 including brackets; ASCII
 * domain labels 63. Source routes are validated and dropped (RFC 5321 §4.1.1.3, Appendix C).
 *
 * Trust: the text is already valid UTF-8 (command.ts decoded it fatally). The domain is kept as
 * written, case included; deciding what it means (local, relay, IDNA) is the caller's job.
 * IPv6 literals follow RFC 4291 text forms (`::` may stand for one group), slightly more
 * lenient than RFC 5321's grammar, which no sender relies on being rejected.
 */
import { Buffer } from 'node:buffer';
import type { Mailbox, ReversePath } from './types.js';

export type PathResult<T> = { readonly ok: true; readonly path: T } | { readonly ok: false; readonly reason: string };

const MAX_LOCAL = 64;
const MAX_DOMAIN = 255;
const MAX_PATH = 256;
const MAX_LABEL = 63;

const DOT_STRING = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+)*$/u;
const LABEL = /^(?:[A-Za-z0-9\u0080-\u{10FFFF}](?:[A-Za-z0-9\-\u0080-\u{10FFFF}]*[A-Za-z0-9\u0080-\u{10FFFF}])?)$/u;
const NON_ASCII = /[^\x00-\x7f]/;

const octets = (s: string): number => Buffer.byteLength(s, 'utf8');
const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

export function parseReversePath(text: string): PathResult<ReversePath> {
  if (text === '<>') return { ok: true, path: null };
  return parsePath(text, false);
}

/** Forward-path; also accepts `<Postmaster>` (any case), which has domain ''. */
export function parseForwardPath(text: string): PathResult<Mailbox> {
  return parsePath(text, true);
}

/** `<>` or `<address>`. */
export function formatPath(path: ReversePath): string {
  return path === null ? '<>' : `<${path.address}>`;
}

/** RFC 5321 §4.5.1: the local part `postmaster` in any case, with or without a domain. */
export function isPostmaster(mailbox: Mailbox): boolean {
  return mailbox.localPart.toLowerCase() === 'postmaster';
}

function parsePath(text: string, forward: boolean): PathResult<Mailbox> {
  if (!text.startsWith('<') || !text.endsWith('>') || text.length < 2) return fail('path must be in angle brackets');
  if (octets(text) > MAX_PATH) return fail(`path longer than ${MAX_PATH} octets`);
  let inner = text.slice(1, -1);
  if (forward && inner.toLowerCase() === 'postmaster') return { ok: true, path: mailbox(inner, '') };
  if (inner.startsWith('@')) {
    const colon = inner.indexOf(':');
    if (colon < 0) return fail('source route without colon');
    const bad = inner.slice(0, colon).split(',').find((hop) => !hop.startsWith('@') || !isValidDomain(hop.slice(1)));
    if (bad !== undefined) return fail('bad source route');
    inner = inner.slice(colon + 1);
  }
  return parseMailbox(inner);
}

/** `Local-part "@" ( Domain / address-literal )`. */
export function parseMailbox(text: string): PathResult<Mailbox> {
  const local = readLocalPart(text);
  if (!local.ok) return local;
  const { value, written } = local.path;
  if (octets(written) > MAX_LOCAL) return fail(`local part longer than ${MAX_LOCAL} octets`);
  if (text[written.length] !== '@') return fail('missing @domain');
  const domain = text.slice(written.length + 1);
  if (octets(domain) > MAX_DOMAIN) return fail(`domain longer than ${MAX_DOMAIN} octets`);
  if (!(domain.startsWith('[') ? isValidAddressLiteral(domain) : isValidDomain(domain))) return fail('bad domain');
  return { ok: true, path: mailbox(value, domain) };
}

function mailbox(localPart: string, domain: string): Mailbox {
  const local = quoteLocalPart(localPart);
  const address = domain === '' ? local : `${local}@${domain}`;
  return { localPart, domain, utf8: NON_ASCII.test(localPart) || NON_ASCII.test(domain), address };
}

/** The local part as a Dot-string when it is one, else as a Quoted-string. */
export function quoteLocalPart(local: string): string {
  return DOT_STRING.test(local) ? local : `"${local.replace(/["\\]/g, '\\$&')}"`;
}

type LocalPart = { value: string; written: string };

function readLocalPart(text: string): PathResult<LocalPart> {
  if (!text.startsWith('"')) {
    const at = text.indexOf('@'); // atext has no '@'; a literal's content may
    const written = at < 0 ? text : text.slice(0, at);
    return DOT_STRING.test(written) ? { ok: true, path: { value: written, written } } : fail('bad local part');
  }
  let value = '';
  for (let i = 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) return { ok: true, path: { value, written: text.slice(0, i + 1) } };
    if (c === 0x5c) {
      const next = text.charCodeAt(++i);
      if (!(next >= 0x20 && next <= 0x7e)) return fail('bad quoted-pair in local part');
      value += text[i];
    } else if ((c >= 0x20 && c <= 0x7e) || c >= 0x80) {
      value += text[i];
    } else {
      return fail('control character in local part');
    }
  }
  return fail('unterminated quoted local part');
}

/** Dot-separated LDH labels (U-labels allowed, RFC 6531), no empty label, no trailing dot. */
export function isValidDomain(domain: string): boolean {
  if (domain === '' || octets(domain) > MAX_DOMAIN) return false;
  return domain.split('.').every((label) => LABEL.test(label) && (NON_ASCII.test(label) || label.length <= MAX_LABEL));
}

/** `[IPv4]`, `[IPv6:…]` or `[tag:content]` (RFC 5321 §4.1.3). */
export function isValidAddressLiteral(literal: string): boolean {
  if (!literal.startsWith('[') || !literal.endsWith(']')) return false;
  const inner = literal.slice(1, -1);
  if (/^ipv6:/i.test(inner)) return isIPv6(inner.slice(5));
  const colon = inner.indexOf(':');
  if (colon < 0) return isIPv4(inner);
  const tag = inner.slice(0, colon);
  return LABEL.test(tag) && !NON_ASCII.test(tag) && /^[\x21-\x5a\x5e-\x7e]+$/.test(inner.slice(colon + 1));
}

export function isIPv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

export function isIPv6(text: string): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groups = halves.map((h) => (h === '' ? [] : h.split(':')));
  const all = groups.flat();
  let count = all.length;
  const tail = groups[groups.length - 1] ?? [];
  const last = tail[tail.length - 1];
  if (last !== undefined && last.includes('.')) {
    if (!isIPv4(last)) return false;
    all.pop();
    count += 1;
  }
  if (!all.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return halves.length === 2 ? count <= 7 : count === 8;
}
