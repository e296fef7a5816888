/**
 * DKIM test keys and an independent check of signatures: keys are generated per test run (never
 * committed), written as PEM files the way an operator would, with the DNS TXT record that
 * publishes each; verify() runs mailauth's verifier with a resolver that answers only those
 * records, so no test ever asks the real DNS.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';

export interface TestDkimKey {
  readonly domain: string;
  readonly selector: string;
  /** The private key's PEM file (PKCS#8). */
  readonly file: string;
  /** `<selector>._domainkey.<domain>` */
  readonly dnsName: string;
  /** The TXT record's value: `v=DKIM1; k=rsa|ed25519; p=…`. */
  readonly txt: string;
}

/** The p= value of a public key: base64 SubjectPublicKeyInfo for RSA, the raw 32 octets for Ed25519 (RFC 8463 §4.2). */
export function publicKeyRecord(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  if (publicKey.asymmetricKeyType === 'ed25519') return `v=DKIM1; k=ed25519; p=${der.subarray(der.length - 32).toString('base64')}`;
  return `v=DKIM1; k=rsa; p=${der.toString('base64')}`;
}

export async function makeDkimKey(dir: string, domain: string, selector: string, kind: 'rsa' | 'ed25519', bits = 2048): Promise<TestDkimKey> {
  const { privateKey, publicKey } = kind === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: bits }) : generateKeyPairSync('ed25519');
  const file = join(dir, `${selector}.${domain}.${kind}.pem`);
  await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { domain, selector, file, dnsName: `${selector}._domainkey.${domain}`, txt: publicKeyRecord(publicKey) };
}

/** A `[[dkim]]` table for a TOML config file. */
export function dkimTable(key: TestDkimKey, extra = ''): string {
  return `[[dkim]]\ndomain = "${key.domain}"\nselector = "${key.selector}"\nkey-file = ${JSON.stringify(key.file)}\n${extra}`;
}

export interface Verdict {
  readonly domain: string | undefined;
  readonly selector: string | undefined;
  readonly result: string;
  readonly comment: string | undefined;
  readonly algo: string | undefined;
}

/** Every DKIM-Signature of the message, verified against the given keys' records only. */
export async function verifyDkim(message: Buffer, keys: readonly TestDkimKey[]): Promise<Verdict[]> {
  const records = new Map(keys.map((k) => [k.dnsName, k.txt]));
  const out = await dkimVerify(message, {
    resolver: async (name: string, type: string) => {
      const txt = type === 'TXT' ? records.get(name) : undefined;
      if (txt === undefined) throw Object.assign(new Error(`no ${type} record for ${name} in the test`), { code: 'ENOTFOUND' });
      return [[txt]];
    },
  });
  return out.results.map((r) => ({ domain: r.signingDomain, selector: r.selector, result: r.status.result, comment: r.status.comment, algo: r.algo }));
}
