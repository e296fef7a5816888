/**
 * @module cli/user
 * `postwire user add|remove|list`: manage the AUTH user file that `serve --users FILE` reads.
 *
 *   postwire user add NAME [--sender ADDRESS]... [--password-stdin] --users FILE
 *   postwire user remove NAME --users FILE
 *   postwire user list --users FILE
 *
 * The file is named by `--users FILE` or POSTWIRE_USERS. `add` reads the password from the
 * terminal without echo (asked twice), or, with `--password-stdin`, from standard input (one line;
 * for scripts). The password is hashed with argon2id (@node-rs/argon2, a random salt per user)
 * and never printed; `list` prints names and addresses, never hashes. Every change rewrites the
 * file atomically (util/atomic-file), mode 0600; a running server picks it up on SIGHUP.
 *
 * Exit codes (DESIGN §3): 0 done; 2 a usage error (unknown flag, missing name or file, a bad
 * name or address, an empty password, no terminal without --password-stdin); 1 the file cannot
 * be read or written, is malformed, or the user exists (add) or does not (remove).
 */
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { hash } from '@node-rs/argon2';
import { isValidSenderAddress, isValidUserName, readUserFile, writeUserFile } from '../util/index.js';
import type { UserEntry } from '../util/index.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, explainError, type CliIo } from './io.js';

const USAGE = `usage: postwire user add NAME [--sender ADDRESS]... [--password-stdin] --users FILE
       postwire user remove NAME --users FILE
       postwire user list --users FILE
The file may also be named by POSTWIRE_USERS. add asks for the password on the terminal (no echo),
or reads one line from standard input with --password-stdin.
`;

const MAX_PASSWORD = 1024;

export async function runUser(args: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: {
        users: { type: 'string' },
        sender: { type: 'string', multiple: true },
        'password-stdin': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    return usage(io, err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(USAGE);
    return EXIT_OK;
  }
  const [action, name, ...extra] = positionals;
  const file = values.users ?? io.env?.['POSTWIRE_USERS'];
  if (action === undefined) return usage(io, 'say add, remove or list');
  if (file === undefined || file === '') return usage(io, 'name the user file with --users FILE (or POSTWIRE_USERS)');
  if (extra.length > 0) return usage(io, `unexpected argument ${JSON.stringify(extra[0])}`);
  switch (action) {
    case 'list':
      if (name !== undefined) return usage(io, 'list takes no name');
      return list(io, file);
    case 'remove':
      if (name === undefined) return usage(io, 'remove needs a user name');
      return remove(io, file, name);
    case 'add': {
      if (name === undefined) return usage(io, 'add needs a user name');
      if (!isValidUserName(name)) return usage(io, `${JSON.stringify(name)} is not a user name (letters, digits and . _ @ + = -, at most 128)`);
      const senders = values.sender ?? [];
      const bad = senders.find((s) => !isValidSenderAddress(s));
      if (bad !== undefined) return usage(io, `--sender ${JSON.stringify(bad)} is not an address (local@domain)`);
      return add(io, file, name, senders, values['password-stdin'] === true);
    }
    default:
      return usage(io, `unknown action ${JSON.stringify(action)} (add, remove or list)`);
  }
}

function usage(io: CliIo, problem: string): number {
  io.stderr(`postwire user: ${problem}\n${USAGE}`);
  return EXIT_USAGE;
}

/** The users in the file; a missing file is empty only when `missingOk`. */
async function load(io: CliIo, file: string, missingOk: boolean): Promise<Map<string, UserEntry> | undefined> {
  if (!existsSync(file)) {
    if (missingOk) return new Map();
    io.stderr(`postwire user: no user file at ${file} (postwire user add creates it)\n`);
    return undefined;
  }
  const read = await readUserFile(file);
  if (!read.ok) {
    for (const e of read.errors) io.stderr(`postwire user: ${e}\n`);
    return undefined;
  }
  return new Map(read.users);
}

async function save(io: CliIo, file: string, users: Map<string, UserEntry>): Promise<boolean> {
  try {
    await writeUserFile(file, users.values());
    return true;
  } catch (err) {
    io.stderr(`postwire user: cannot write ${file}: ${explainError(err)}\n`);
    return false;
  }
}

async function list(io: CliIo, file: string): Promise<number> {
  const users = await load(io, file, false);
  if (users === undefined) return EXIT_FAILURE;
  for (const u of users.values()) io.stdout(u.senders.length > 0 ? `${u.name}\t${u.senders.join(',')}\n` : `${u.name}\n`);
  return EXIT_OK;
}

async function remove(io: CliIo, file: string, name: string): Promise<number> {
  const users = await load(io, file, false);
  if (users === undefined) return EXIT_FAILURE;
  if (!users.delete(name)) {
    io.stderr(`postwire user: no user ${name} in ${file}\n`);
    return EXIT_FAILURE;
  }
  if (!(await save(io, file, users))) return EXIT_FAILURE;
  io.stderr(`postwire user: removed ${name} (a running server applies it at SIGHUP)\n`);
  return EXIT_OK;
}

async function add(io: CliIo, file: string, name: string, senders: readonly string[], fromStdin: boolean): Promise<number> {
  const users = await load(io, file, true);
  if (users === undefined) return EXIT_FAILURE;
  if (users.has(name)) {
    io.stderr(`postwire user: ${name} already exists in ${file} (remove it first to change its password)\n`);
    return EXIT_FAILURE;
  }
  const password = await readPassword(io, fromStdin);
  if (typeof password !== 'string') return usage(io, password.problem);
  if (password === '') return usage(io, 'the password is empty');
  if (password.length > MAX_PASSWORD) return usage(io, `the password is longer than ${MAX_PASSWORD} characters`);
  // PLAIN separates its fields with NUL: a password holding one could never be sent.
  if (password.includes('\0')) return usage(io, 'the password holds a NUL character');
  users.set(name, { name, hash: await hash(password), senders });
  if (!(await save(io, file, users))) return EXIT_FAILURE;
  io.stderr(`postwire user: added ${name} to ${file} (a running server applies it at SIGHUP)\n`);
  return EXIT_OK;
}

async function readPassword(io: CliIo, fromStdin: boolean): Promise<string | { problem: string }> {
  if (fromStdin) {
    if (io.readStdin === undefined) return { problem: 'standard input is not available' };
    const text = (await io.readStdin()).toString('utf8');
    // One line: the trailing newline `echo` or a here-string adds is not part of the password.
    return text.replace(/\r?\n$/, '');
  }
  if (io.promptSecret === undefined) return { problem: 'standard input is not a terminal: pass the password with --password-stdin' };
  const first = await io.promptSecret('Password: ');
  const again = await io.promptSecret('Password again: ');
  if (first !== again) return { problem: 'the passwords differ' };
  return first;
}
