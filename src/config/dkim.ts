/**
 * @module config/dkim
 * The `dkim` key of the --config file: the DKIM signing keys (RFC 6376), one table per key:
 *
 *   [[dkim]]
 *   domain = "example.com"          # d=, matched against the From: header's domain
 *   selector = "mail2026"           # s=: the key is published at mail2026._domainkey.example.com
 *   key-file = "/etc/postwire/dkim/example.com.pem"
 *   # optional: algorithm (must match the key), headers, canonicalization, subdomains
 *
 * Like routes, the keys are structured, so they live only in the file (`[[dkim]]` tables in TOML,
 * a `"dkim"` list in JSON) and have no flag or POSTWIRE_* form.
 *
 * The key file is read and checked here, at load, so that a missing, unreadable, encrypted or
 * invalid key, an algorithm the key cannot do, or an RSA key under 1024 bits stops `serve` and
 * `check-config` with exit 2, naming the file, the table's index and the problem, instead of
 * failing every message at its first signature. The key is kept in Config (as PKCS#8 PEM) so
 * the signer never reads the file again: what was checked is what signs, and a SIGHUP reload
 * reads and checks the files anew before it swaps them in. An RSA key under 2048 bits is
 * accepted with a warning (`weakness`), which check-config prints and serve logs.
 *
 * The algorithm follows the key: RSA → rsa-sha256, Ed25519 → ed25519-sha256 (RFC 8463). Other
 * key types (EC P-256, DSA) have no DKIM algorithm and are refused.
 * Pure apart from reading the key files it is pointed at.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { DkimCanonicalization, DkimKeySetting } from './types.js';

const FIELDS = new Set(['domain', 'selector', 'key-file', 'algorithm', 'headers', 'canonicalization', 'subdomains']);
const ALGORITHMS = ['rsa-sha256', 'ed25519-sha256'] as const;
const CANONICALIZATIONS: readonly DkimCanonicalization[] = ['relaxed/relaxed', 'relaxed/simple', 'simple/relaxed', 'simple/simple'];
/** RFC 8301 §3.2: verifiers must refuse RSA keys under 1024 bits; signers should use 2048 or more. */
export const DKIM_MIN_RSA_BITS = 1024;
export const DKIM_WARN_RSA_BITS = 2048;

/**
 * What is signed unless a table says otherwise: the fields a reader sees and the ones that change
 * how the body is read (RFC 6376 §5.4.1's list), without trace or resent fields, which relays add.
 * From is always signed and also oversigned (listed once more than it occurs), so that a From:
 * added on the way breaks the signature instead of displaying beside a valid one.
 */
export const DKIM_DEFAULT_HEADERS: readonly string[] = [
  'From', 'Reply-To', 'Subject', 'Date', 'Message-ID', 'To', 'Cc', 'MIME-Version', 'Content-Type',
  'Content-Transfer-Encoding', 'Content-ID', 'Content-Description', 'In-Reply-To', 'References', 'Sender',
  'List-Id', 'List-Help', 'List-Unsubscribe', 'List-Unsubscribe-Post', 'List-Subscribe', 'List-Post', 'List-Owner', 'List-Archive',
];

/** An LDH label (A-labels only: d= and s= are DNS names, RFC 6376 §3.5). */
const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
/** RFC 5322 field name: printable ASCII except ':'. */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

/**
 * `key` is how the file spells the list (`dkim` in both formats); `lines[i]`, when known, is the
 * line where table i starts. Every error is pushed to `errors` as `file:line: dkim[i]: problem`.
 */
export function parseDkimKeys(path: string, value: unknown, errors: string[], lines: readonly number[] = [], readKey: (file: string) => Buffer = readFileSync): DkimKeySetting[] | undefined {
  if (!Array.isArray(value)) {
    errors.push(`${path}: key "dkim" must be a list of keys ([[dkim]] tables in TOML), e.g. [[dkim]] domain = "example.com" selector = "s1" key-file = "/etc/postwire/dkim.pem"`);
    return undefined;
  }
  const out: DkimKeySetting[] = [];
  const seen = new Map<string, number>();
  value.forEach((item: unknown, i) => {
    const line = lines[i];
    const where = `${path}${line === undefined ? '' : `:${line}`}: dkim[${i}]`;
    const key = parseKey(where, item, errors, readKey);
    if (!key) return;
    const id = `${key.selector}._domainkey.${key.domain}`;
    const first = seen.get(id);
    if (first !== undefined) errors.push(`${where}: the same domain and selector as dkim[${first}] (${id}): one key per selector`);
    else seen.set(id, i);
    out.push(key);
  });
  return out;
}

function parseKey(where: string, item: unknown, errors: string[], readKey: (file: string) => Buffer): DkimKeySetting | undefined {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) {
    errors.push(`${where}: must be a table with "domain", "selector" and "key-file"`);
    return undefined;
  }
  const fields = item as Record<string, unknown>;
  const before = errors.length;
  for (const name of Object.keys(fields)) {
    if (!FIELDS.has(name)) errors.push(`${where}: field ${JSON.stringify(name)} is unknown (known: ${[...FIELDS].join(', ')})`);
  }
  const domain = dnsName(where, 'domain', fields['domain'], errors, 'a domain name such as "example.com" (A-labels: xn--… for an IDN)');
  const selector = dnsName(where, 'selector', fields['selector'], errors, 'a selector such as "mail2026" (letters, digits, "-", dots between labels)');
  const headers = parseHeaders(where, fields['headers'], errors);
  const canonicalization = parseCanonicalization(where, fields['canonicalization'], errors);
  const subdomains = fields['subdomains'];
  if (subdomains !== undefined && typeof subdomains !== 'boolean') errors.push(`${where}: "subdomains" must be true or false`);
  const algorithm = fields['algorithm'];
  if (algorithm !== undefined && (typeof algorithm !== 'string' || !(ALGORITHMS as readonly string[]).includes(algorithm))) {
    errors.push(`${where}: "algorithm" must be ${ALGORITHMS.join(' or ')} (or left out: the key decides)`);
  }
  const keyFile = fields['key-file'];
  if (typeof keyFile !== 'string' || keyFile.trim() === '') {
    errors.push(`${where}: "key-file" must name the private key's PEM file`);
    return undefined;
  }
  const key = readPrivateKey(`${where}: "key-file" ${JSON.stringify(keyFile)}`, keyFile, errors, readKey);
  if (key === undefined || errors.length > before || domain === undefined || selector === undefined) return undefined;
  if (typeof algorithm === 'string' && algorithm !== key.algorithm) {
    errors.push(`${where}: "algorithm" is ${algorithm} but "key-file" ${JSON.stringify(keyFile)} holds ${describeKey(key)}, which signs ${key.algorithm}`);
    return undefined;
  }
  return {
    domain,
    selector,
    keyFile,
    algorithm: key.algorithm,
    ...(key.bits !== undefined ? { bits: key.bits } : {}),
    privateKey: key.pem,
    headers,
    canonicalization,
    subdomains: subdomains === true,
  };
}

function dnsName(where: string, field: string, value: unknown, errors: string[], expected: string): string | undefined {
  if (typeof value !== 'string') {
    errors.push(`${where}: "${field}" is required: ${expected}`);
    return undefined;
  }
  const name = value.replace(/\.$/, '').toLowerCase();
  if (name.length === 0 || name.length > 253 || !name.split('.').every((l) => LABEL.test(l))) {
    errors.push(`${where}: "${field}" ${JSON.stringify(value)} is not ${expected}`);
    return undefined;
  }
  return name;
}

function parseHeaders(where: string, value: unknown, errors: string[]): readonly string[] {
  if (value === undefined) return DKIM_DEFAULT_HEADERS;
  if (!Array.isArray(value) || value.length === 0 || !value.every((h): h is string => typeof h === 'string' && FIELD_NAME.test(h))) {
    errors.push(`${where}: "headers" must be a list of header field names, e.g. ["From", "To", "Subject", "Date"]`);
    return DKIM_DEFAULT_HEADERS;
  }
  const names = value as string[];
  // RFC 6376 §5.4: the From header field MUST be signed.
  if (!names.some((h) => h.toLowerCase() === 'from')) errors.push(`${where}: "headers" must include "From" (RFC 6376 §5.4: From is always signed)`);
  const lower = names.map((h) => h.toLowerCase());
  const dup = lower.find((h, i) => lower.indexOf(h) !== i);
  if (dup !== undefined) errors.push(`${where}: "headers" names ${JSON.stringify(dup)} twice (each listed field is signed in every occurrence; From is oversigned by itself)`);
  if (lower.includes('dkim-signature')) errors.push(`${where}: "headers" cannot include DKIM-Signature`);
  return names;
}

function parseCanonicalization(where: string, value: unknown, errors: string[]): DkimCanonicalization {
  if (value === undefined) return 'relaxed/relaxed';
  if (typeof value !== 'string' || !(CANONICALIZATIONS as readonly string[]).includes(value)) {
    errors.push(`${where}: "canonicalization" must be one of ${CANONICALIZATIONS.join(', ')} (header/body)`);
    return 'relaxed/relaxed';
  }
  return value as DkimCanonicalization;
}

interface CheckedKey {
  readonly algorithm: DkimKeySetting['algorithm'];
  readonly bits: number | undefined;
  readonly pem: string;
}

function readPrivateKey(where: string, file: string, errors: string[], readKey: (file: string) => Buffer): CheckedKey | undefined {
  let bytes: Buffer;
  try {
    bytes = readKey(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied (the key must be readable by the user Postwire runs as)' : code === 'EISDIR' ? 'is a directory' : err instanceof Error ? err.message : String(err);
    errors.push(`${where}: cannot read the key: ${why}`);
    return undefined;
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: bytes, format: 'pem' });
  } catch (err) {
    const text = bytes.toString('latin1');
    const why = /ENCRYPTED/.test(text)
      ? 'the key is encrypted: Postwire needs it without a passphrase (protect it with file permissions instead)'
      : !/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)
        ? 'not a PEM private key (expected "-----BEGIN PRIVATE KEY-----" or "-----BEGIN RSA PRIVATE KEY-----")'
        : `not a valid private key (${err instanceof Error ? err.message : String(err)})`;
    errors.push(`${where}: ${why}`);
    return undefined;
  }
  const pem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  if (key.asymmetricKeyType === 'ed25519') return { algorithm: 'ed25519-sha256', bits: undefined, pem };
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < DKIM_MIN_RSA_BITS) {
      errors.push(`${where}: the RSA key has ${bits} bits; DKIM verifiers refuse keys under ${DKIM_MIN_RSA_BITS} bits (RFC 8301): generate one of ${DKIM_WARN_RSA_BITS}`);
      return undefined;
    }
    return { algorithm: 'rsa-sha256', bits, pem };
  }
  errors.push(`${where}: a ${key.asymmetricKeyType ?? 'unknown'} key has no DKIM algorithm: use an RSA key (rsa-sha256) or an Ed25519 key (ed25519-sha256, RFC 8463)`);
  return undefined;
}

function describeKey(key: CheckedKey): string {
  return key.bits !== undefined ? `an RSA key of ${key.bits} bits` : 'an Ed25519 key';
}

/** The operator-facing warning for a key that works but is weak, or undefined. */
export function dkimKeyWeakness(key: DkimKeySetting): string | undefined {
  if (key.bits !== undefined && key.bits < DKIM_WARN_RSA_BITS) {
    return `the RSA key in ${key.keyFile} has ${key.bits} bits: use ${DKIM_WARN_RSA_BITS} (RFC 8301 recommends at least ${DKIM_WARN_RSA_BITS})`;
  }
  return undefined;
}
