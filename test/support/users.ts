/**
 * AUTH user files for tests: real argon2id hashes (the library serve verifies with) written in
 * the real format by util's writer, in a fresh temp directory.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash } from '@node-rs/argon2';
import { writeUserFile } from '../../src/util/index.js';

export interface TestUser {
  readonly name: string;
  readonly password: string;
  readonly senders?: readonly string[];
}

export async function writeTestUsers(users: readonly TestUser[], dir?: string): Promise<string> {
  const at = dir ?? (await mkdtemp(join(tmpdir(), 'postwire-users-')));
  const path = join(at, 'users');
  const entries = await Promise.all(users.map(async (u) => ({ name: u.name, hash: await hash(u.password), senders: u.senders ?? [] })));
  await writeUserFile(path, entries);
  return path;
}

/** base64 of an AUTH PLAIN response: NUL user NUL password. */
export function plain(user: string, password: string, authzid = ''): string {
  return Buffer.from(`${authzid}\0${user}\0${password}`, 'utf8').toString('base64');
}
