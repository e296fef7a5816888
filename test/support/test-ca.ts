/**
 * A throwaway certificate authority for the TLS tests, made with the openssl command (Debian's
 * `openssl` package; scripts/ci-deps.sh installs it) in a fresh temp directory: a CA, and leaf
 * certificates it signs for the names a test asks for (DNS names and IP addresses both go into
 * subjectAltName, which is what Node's checkServerIdentity reads). Nothing here touches the
 * system's trust store: a test passes `ca` to whoever must trust the leaves.
 *
 * Each call of `createTestCa` makes a new key pair, so two tests never share a CA by accident and a
 * "wrong CA" case is just a second `createTestCa()`. RSA 2048 keeps generation fast enough
 * (about 50 ms a key here) for a test to make its own.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { runProcess } from './interop.js';

export interface TestCa {
  /** The CA certificate, PEM: give it to the side that verifies. */
  readonly ca: string;
  readonly caFile: string;
  /** The directory holding every file this CA wrote. */
  readonly dir: string;
  /** A leaf for `names` (DNS names or IP literals; the first is also the CN), signed by this CA. */
  issue(names: readonly string[], options?: LeafOptions): Promise<TestLeaf>;
}

export interface LeafOptions {
  /** Days of validity (positive: openssl x509 cannot back-date a certificate). */
  readonly days?: number;
  /** A file-name stem, when a test wants to find the files (default: the first name). */
  readonly stem?: string;
}

export interface TestLeaf {
  readonly cert: string;
  readonly key: string;
  readonly certFile: string;
  readonly keyFile: string;
}

let counter = 0;

export async function createTestCa(name = 'Postwire Test CA'): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'postwire-ca-'));
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.pem');
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caFile,
    '-days', '30', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const ca = await readFile(caFile, 'utf8');
  return {
    ca, caFile, dir,
    async issue(names, options = {}) {
      const first = names[0];
      if (first === undefined) throw new Error('createTestCa.issue: at least one name');
      const stem = `${options.stem ?? first.replace(/[^A-Za-z0-9.-]/g, '_')}-${++counter}`;
      const keyFile = join(dir, `${stem}.key`);
      const csrFile = join(dir, `${stem}.csr`);
      const certFile = join(dir, `${stem}.pem`);
      const extFile = join(dir, `${stem}.ext`);
      const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      await writeFile(extFile, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n`);
      await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${first}`]);
      const days = options.days ?? 30;
      if (days <= 0) throw new Error('createTestCa.issue: days must be positive');
      await openssl(['x509', '-req', '-in', csrFile, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial',
        '-out', certFile, '-days', String(days), '-extfile', extFile]);
      return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8'), certFile, keyFile };
    },
  };
}

async function openssl(args: readonly string[]): Promise<void> {
  const result = await runProcess('openssl', args, { timeoutMs: 30_000 });
  if (result.status !== 0) throw new Error(`openssl ${args[0]} failed (${result.status}): ${result.stderr.trim()}`);
}
