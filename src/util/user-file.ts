/**
 * @module util/user-file
 * The AUTH user file: one user per line, `NAME:HASH[:ADDRESS,ADDRESS…]`, where HASH is a PHC
 * string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`, which holds no `:`) and the addresses are the
 * envelope senders the user may use when sender binding is on. `#` starts a comment line; blank
 * lines are ignored. Parsing and formatting are pure; reading and writing are here too so that
 * the CLI (which writes it) and smtpd (which reads it) share one definition.
 *
 * Failure: parseUserFile never throws; it returns every problem as `path:line: what`. The hash is
 * checked only for shape (a PHC string): whether it verifies is the reader's business.
 * Trust: the file is the operator's, but a typo must be an error that names the line, never a
 * user who silently cannot log in, or a line that half-parses into another user.
 */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from './atomic-file.js';

export interface UserEntry {
  readonly name: string;
  /** A PHC-format password hash (argon2id). */
  readonly hash: string;
  /** Envelope senders this user may use (sender binding); may be empty. */
  readonly senders: readonly string[];
}

export type UserFileResult =
  | { readonly ok: true; readonly users: ReadonlyMap<string, UserEntry> }
  | { readonly ok: false; readonly errors: readonly string[] };

/** Printable ASCII without `:` `,` or space: safe in the file, in logs and in a PLAIN response. */
const NAME = /^[A-Za-z0-9._@+=-]{1,128}$/;
const PHC = /^\$[a-z0-9-]+(?:\$[A-Za-z0-9=,.+/-]+)+$/;
const ADDRESS = /^[^\s,:<>@]+@[^\s,:<>@]+$/;

export function isValidUserName(name: string): boolean {
  return NAME.test(name);
}

export function isValidSenderAddress(address: string): boolean {
  return ADDRESS.test(address) && address.length <= 254;
}

export function parseUserFile(text: string, path: string): UserFileResult {
  const users = new Map<string, UserEntry>();
  const errors: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${path}:${i + 1}`;
    const [name = '', hash = '', senderText, ...extra] = line.split(':');
    if (extra.length > 0) return void errors.push(`${where}: too many ":" fields (expected NAME:HASH[:ADDRESS,...])`);
    if (!NAME.test(name)) return void errors.push(`${where}: ${JSON.stringify(name)} is not a user name (letters, digits and . _ @ + = -, at most 128)`);
    if (!PHC.test(hash)) return void errors.push(`${where}: user ${name}: the password hash is not a PHC string ($argon2id$...)`);
    const senders = senderText === undefined || senderText === '' ? [] : senderText.split(',').map((s) => s.trim());
    const bad = senders.find((s) => !isValidSenderAddress(s));
    if (bad !== undefined) return void errors.push(`${where}: user ${name}: ${JSON.stringify(bad)} is not an address (local@domain)`);
    if (users.has(name)) return void errors.push(`${where}: user ${name} is listed twice`);
    users.set(name, { name, hash, senders });
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, users };
}

export function formatUserFile(users: Iterable<UserEntry>): string {
  const lines = ['# Postwire AUTH users: NAME:ARGON2ID-HASH[:ADDRESS,...]; managed with `postwire user`'];
  for (const u of users) lines.push(u.senders.length > 0 ? `${u.name}:${u.hash}:${u.senders.join(',')}` : `${u.name}:${u.hash}`);
  return `${lines.join('\n')}\n`;
}

/** Reads and parses; a missing or unreadable file is one error naming the path. */
export async function readUserFile(path: string): Promise<UserFileResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return { ok: false, errors: [`${path}: cannot read the user file: ${err instanceof Error ? err.message : String(err)}`] };
  }
  return parseUserFile(text, path);
}

/** Replaces the file atomically, readable by its owner only (it holds password hashes). */
export function writeUserFile(path: string, users: Iterable<UserEntry>): Promise<void> {
  return writeFileAtomic(path, formatUserFile(users), 0o600);
}
