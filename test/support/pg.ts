/**
 * The PostgreSQL server the shared-queue tests run against (DESIGN: database `test` on this
 * machine; POSTWIRE_TEST_PG overrides the URL). Every test makes its own schema `pw_t_<random>`
 * and drops it afterwards, because test files and other worktrees share the database; every
 * connection a test opens names itself `postwire:pw_t_<random>…` (application_name), so a test
 * that kills connections (pg_terminate_backend) kills only its own.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_URL = process.env.POSTWIRE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh schema name, also the prefix of this test's node names. */
export function testSchemaName(): string {
  return `pw_t_${randomBytes(5).toString('hex')}`;
}

/** Run one statement on a short-lived connection of its own. */
export async function admin<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: PG_URL, application_name: 'postwire-test-admin' });
  await client.connect();
  try {
    return await client.query<R>(text, values);
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  if (!/^pw_t_[0-9a-f]+$/.test(schema)) throw new Error(`refusing to drop ${schema}: not a test schema`);
  await admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
}

/** Terminate the backends whose application_name starts with `postwire:<prefix>` (this test's own). Returns how many. */
export async function terminateOwn(prefix: string): Promise<number> {
  if (!/^pw_t_[0-9a-f]+/.test(prefix)) throw new Error(`refusing to terminate ${prefix}: not a test prefix`);
  const r = await admin<{ ok: boolean }>(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
    [`postwire:${prefix}%`],
  );
  return r.rows.filter((x) => x.ok).length;
}
