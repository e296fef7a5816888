/**
 * @module cleanup/dkim
 * DKIM signing (RFC 6376; Ed25519 per RFC 8463) of one message while cleanup writes it to the
 * queue, so it is signed once, at enqueue, and every retry sends the same signed bytes.
 *
 * How: the bytes that go to the store go here too, in the same order. First the header section
 * is gathered (up to `maxHeaderOctets`) to find the one From: field's domain (DMARC aligns on
 * it); the keyring picks the keys for that domain (exact, else the nearest parent domain whose
 * key allows subdomains). With no key, nothing more is kept and the message is unsigned. With
 * keys, mailauth's dkimSign reads the message as a stream: the gathered header, then each chunk
 * as it is written, with backpressure, so the body is never held whole. At the end the
 * DKIM-Signature fields are returned for Envelope.prepend.
 *
 * Failure: a key that cannot sign (mailauth reports it), or a stream error, rejects finish()
 * with DkimSignError; cleanup then refuses the commit, so the client gets 451 4.3.0 and retries:
 * a configured signer signs, or the message is not accepted (never queued unsigned by surprise).
 * Messages without one From: domain, or whose header section is larger than the bound, are
 * unsigned by design (there is nothing to align with) and say why in `reason`.
 * Trust: the bytes are the client's; only the From: field's address is interpreted here.
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { domainToASCII } from 'node:url';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import type { DkimKeySetting } from '../config/index.js';

/** Keys by signing domain; answers which keys sign mail from a given From: domain. */
export class DkimKeyring {
  readonly #byDomain = new Map<string, DkimKeySetting[]>();

  constructor(keys: readonly DkimKeySetting[]) {
    for (const key of keys) {
      const list = this.#byDomain.get(key.domain) ?? [];
      list.push(key);
      this.#byDomain.set(key.domain, list);
    }
  }

  get size(): number {
    return this.#byDomain.size;
  }

  /**
   * The keys for a From: domain: every key of that exact domain; else every key of the nearest
   * parent domain that has `subdomains` set. A parent signs only when asked to, because d= then
   * names the parent (DMARC relaxed alignment accepts it, strict alignment does not).
   */
  keysFor(fromDomain: string): readonly DkimKeySetting[] {
    const domain = normalizeDomain(fromDomain);
    if (domain === undefined) return [];
    const exact = this.#byDomain.get(domain);
    if (exact !== undefined) return exact;
    for (let dot = domain.indexOf('.'); dot >= 0; dot = domain.indexOf('.', dot + 1)) {
      const parent = this.#byDomain.get(domain.slice(dot + 1))?.filter((k) => k.subdomains);
      if (parent !== undefined && parent.length > 0) return parent;
    }
    return [];
  }
}

/** A From: domain as the keyring spells domains: A-labels, lower case, no trailing dot. */
function normalizeDomain(domain: string): string | undefined {
  const ascii = domainToASCII(domain.trim().replace(/\.$/, ''));
  return ascii === '' ? undefined : ascii.toLowerCase();
}

export class DkimSignError extends Error {
  constructor(
    message: string,
    readonly domain: string,
  ) {
    super(message);
    this.name = 'DkimSignError';
  }
}

export type DkimResult =
  | { readonly signed: true; readonly domain: string; readonly selectors: readonly string[]; readonly header: string }
  | { readonly signed: false; readonly reason: string; readonly fromDomain?: string };

export interface DkimSignerOptions {
  readonly keyring: DkimKeyring;
  /** The header section is gathered up to this many octets to find From:; beyond, unsigned. */
  readonly maxHeaderOctets: number;
  /** The signature's t= (ms since the epoch): the injected clock's now. */
  readonly signTime: number;
}

type Phase =
  /** `tail`: the last octets gathered (at most 3), so an end of header split between chunks is found. */
  | { readonly kind: 'gathering'; readonly parts: Buffer[]; octets: number; tail: Buffer }
  | { readonly kind: 'signing'; readonly input: PassThrough; readonly done: Promise<DkimResult>; failure: unknown }
  | { readonly kind: 'unsigned'; readonly result: DkimResult };

/** One message's signer: write() every stored byte in order, then finish() once. */
export class MessageSigner {
  // The stream is searched as if a CRLF came before it, so a message with an empty header
  // section (it starts with the empty line) is found like any other.
  #phase: Phase = { kind: 'gathering', parts: [], octets: 0, tail: CRLF };

  constructor(private readonly options: DkimSignerOptions) {}

  async write(chunk: Uint8Array): Promise<void> {
    const phase = this.#phase;
    if (phase.kind === 'unsigned' || chunk.length === 0) return;
    // A copy: the caller may reuse its chunk once write() resolves, and the signer reads later.
    const copy = Buffer.from(chunk);
    if (phase.kind === 'signing') return this.#feed(phase, copy);
    // Only the new chunk (and the few octets before it) is searched: a header sent in tiny
    // pieces costs linear time, not a rescan of everything gathered per piece.
    const window = Buffer.concat([phase.tail, copy]);
    const at = window.indexOf(END_OF_HEADER);
    const before = phase.octets;
    phase.parts.push(copy);
    phase.octets += copy.length;
    if (at >= 0) return this.#decide(Buffer.concat(phase.parts, phase.octets), before + at + 2 - phase.tail.length);
    phase.tail = window.subarray(Math.max(0, window.length - 3));
    if (phase.octets > this.options.maxHeaderOctets) {
      this.#phase = { kind: 'unsigned', result: { signed: false, reason: `no end of the header section within ${this.options.maxHeaderOctets} octets` } };
    }
  }

  /** The signature fields (CRLF-terminated) or why the message stays unsigned. */
  async finish(): Promise<DkimResult> {
    const phase = this.#phase;
    if (phase.kind === 'gathering') {
      // A message that is all header (no empty line): the whole of it is the header section.
      const all = Buffer.concat(phase.parts);
      await this.#decide(all, all.length);
      return this.finish();
    }
    if (phase.kind === 'unsigned') return phase.result;
    phase.input.end();
    return phase.done;
  }

  /** Stop signing (the message was aborted); never rejects. */
  abort(): void {
    if (this.#phase.kind === 'signing') this.#phase.input.destroy();
    this.#phase = { kind: 'unsigned', result: { signed: false, reason: 'aborted' } };
  }

  async #decide(gathered: Buffer, headerOctets: number): Promise<void> {
    const from = fromDomain(gathered.subarray(0, headerOctets));
    if (!from.ok) {
      this.#phase = { kind: 'unsigned', result: { signed: false, reason: from.reason } };
      return;
    }
    const keys = this.options.keyring.keysFor(from.domain);
    if (keys.length === 0) {
      this.#phase = { kind: 'unsigned', result: { signed: false, reason: 'no DKIM key for the From: domain', fromDomain: from.domain } };
      return;
    }
    const domain = (keys[0] as DkimKeySetting).domain;
    const input = new PassThrough();
    const signing = dkimSign(input, {
      // mailauth's types want one key at the top level; signatureData carries every key.
      signingDomain: domain,
      selector: (keys[0] as DkimKeySetting).selector,
      privateKey: (keys[0] as DkimKeySetting).privateKey,
      signTime: new Date(this.options.signTime),
      strict: true,
      signatureData: keys.map((k) => ({
        signingDomain: k.domain,
        selector: k.selector,
        privateKey: k.privateKey,
        algorithm: k.algorithm,
        canonicalization: k.canonicalization,
        headerList: [...k.headers],
      })),
    });
    const done = signing.then(
      (result): DkimResult => {
        const problems = result.errors.map((e) => `${e.selector ?? '?'}: ${errorText(e.err)}`);
        if (problems.length > 0 || result.signatures === '') {
          throw new DkimSignError(`DKIM signing for ${domain} failed: ${problems.join('; ') || 'no signature was made'}`, domain);
        }
        return { signed: true, domain, selectors: keys.map((k) => k.selector), header: result.signatures };
      },
      (err: unknown) => {
        throw new DkimSignError(`DKIM signing for ${domain} failed: ${errorText(err)}`, domain);
      },
    );
    const phase: Extract<Phase, { kind: 'signing' }> = { kind: 'signing', input, done, failure: undefined };
    // Remember an early failure so that writes stop waiting for a drain that will not come.
    done.catch((err: unknown) => {
      phase.failure = err;
    });
    this.#phase = phase;
    await this.#feed(phase, gathered);
  }

  async #feed(phase: Extract<Phase, { kind: 'signing' }>, chunk: Buffer): Promise<void> {
    if (phase.failure !== undefined) throw phase.failure;
    if (phase.input.write(chunk)) return;
    // Backpressure: wait for the signer to catch up, or for it to fail or be stopped (abort).
    // The losing waits are cancelled, so no listener outlives its write.
    const waits = new AbortController();
    const { signal } = waits;
    try {
      await Promise.race([once(phase.input, 'drain', { signal }), once(phase.input, 'close', { signal }), phase.done.then(() => undefined)]);
    } finally {
      waits.abort();
    }
    if (phase.failure !== undefined) throw phase.failure;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const CRLF = Buffer.from('\r\n', 'latin1');
/** A field's CRLF followed by the empty line: the end of the header section. */
const END_OF_HEADER = Buffer.from('\r\n\r\n', 'latin1');

type FromDomain = { readonly ok: true; readonly domain: string } | { readonly ok: false; readonly reason: string };

/**
 * The domain of the header section's one From: field. More than one From: field, or a From:
 * whose mailboxes are in different domains, has no single domain to align with (DMARC, RFC 7489
 * §6.6.1, treats both as suspect), so it is not signed.
 */
export function fromDomain(header: Buffer): FromDomain {
  const fields: string[] = [];
  let current: string | undefined;
  for (const line of header.toString('utf8').split('\r\n')) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (current !== undefined) current += line;
      continue;
    }
    if (current !== undefined) fields.push(current);
    current = /^from[ \t]*:/i.test(line) ? line.slice(line.indexOf(':') + 1) : undefined;
  }
  if (current !== undefined) fields.push(current);
  if (fields.length === 0) return { ok: false, reason: 'no From: field' };
  if (fields.length > 1) return { ok: false, reason: `${fields.length} From: fields` };
  const domains = new Set(mailboxDomains(fields[0] as string));
  if (domains.size === 0) return { ok: false, reason: 'no address in the From: field' };
  if (domains.size > 1) return { ok: false, reason: `From: addresses in ${domains.size} domains` };
  return { ok: true, domain: [...domains][0] as string };
}

/** The domains of the addresses in a From: value: angle-addrs when present, else bare addr-specs. */
function mailboxDomains(value: string): string[] {
  // Comments and quoted strings (display names) may hold '@', '<' and ','; drop them first.
  const text = value.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\((?:[^()\\]|\\.)*\)/g, ' ');
  const angles = [...text.matchAll(/<([^<>]*)>/g)].map((m) => m[1] as string);
  const specs = angles.length > 0 ? angles : text.replace(/^[^:]*:(?=[^@]*@)/, '').split(/[,;]/);
  const out: string[] = [];
  for (const spec of specs) {
    const at = spec.lastIndexOf('@');
    if (at < 0) continue;
    const domain = spec.slice(at + 1).trim().replace(/\.$/, '').toLowerCase();
    if (domain !== '') out.push(domain);
  }
  return out;
}
