/**
 * @module smtpd/tls
 * The server's TLS credentials: the certificate chain and private key read from their PEM
 * files into one SecureContext (TLS 1.2 or later), which every new STARTTLS handshake and every
 * submission connection uses. reload() re-reads the files and swaps the context in one step;
 * sessions already in TLS keep the context they began with (their TLSSocket holds it).
 *
 * Failure: load() rejects with an Error naming the file and the reason (unreadable, not PEM,
 * key does not match the certificate); reload() never throws: a bad pair leaves the running
 * context in place and returns the reason, for the caller to log.
 */
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';

/** RFC 8996 / RFC 8314 practice: nothing older than TLS 1.2. */
export const TLS_MIN_VERSION = 'TLSv1.2';

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

export class TlsCredentials {
  private constructor(private current: SecureContext) {}

  static async load(files: TlsFiles): Promise<TlsCredentials> {
    return new TlsCredentials(await contextFrom(files));
  }

  /** The context for a handshake starting now. */
  get context(): SecureContext {
    return this.current;
  }

  async reload(files: TlsFiles): Promise<{ readonly ok: true } | { readonly ok: false; readonly error: string }> {
    try {
      this.current = await contextFrom(files);
      return { ok: true };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  }
}

async function contextFrom(files: TlsFiles): Promise<SecureContext> {
  const cert = await readPem(files.cert, '--tls-cert');
  const key = await readPem(files.key, '--tls-key');
  try {
    return createSecureContext({ cert, key, minVersion: TLS_MIN_VERSION });
  } catch (err) {
    // e.g. "key values mismatch", "no start line": name both files, the pair is what failed.
    throw new Error(`--tls-cert ${files.cert} / --tls-key ${files.key}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

async function readPem(path: string, setting: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new Error(`${setting} ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
