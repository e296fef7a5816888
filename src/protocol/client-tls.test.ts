/**
 * The client machine's STARTTLS, AUTH and REQUIRETLS steps, pure (no sockets): STARTTLS answered
 * 220 hands the handshake to the caller and, once told it succeeded, forgets the old
 * capabilities and sends EHLO again (RFC 3207 §4.2); a refused STARTTLS leaves the session ready
 * in plain text for the caller to judge; AUTH refuses to run before TLS; PLAIN sends an initial
 * response, LOGIN answers two 334s; a 535 fails the session; REQUIRETLS goes on MAIL only to a
 * TLS peer that announces it, and is a local refusal otherwise.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { parseForwardPath } from './address.js';
import { ClientSession } from './client-session.js';
import type { ClientEvent, OutboundMessage } from './client-session.js';
import { ProtocolError } from './reply.js';
import type { Reply } from './types.js';

const reply = (code: number, ...lines: string[]): Reply => ({ code, lines: lines.length > 0 ? lines : ['ok'] });
const writes = (events: readonly ClientEvent[]): string[] => events.flatMap((e) => (e.kind === 'write' ? [e.data] : []));
const kinds = (events: readonly ClientEvent[]): string[] => events.map((e) => e.kind);

function greeted(ehlo: string[]): ClientSession {
  const s = new ClientSession({ hostname: 'relay.test' });
  s.receive(reply(220, 'mx.test ESMTP'));
  const ready = s.receive(reply(250, 'mx.test', ...ehlo));
  assert.deepEqual(kinds(ready), ['ready']);
  return s;
}

function message(requireTls: boolean): OutboundMessage {
  const to = parseForwardPath('<bob@example.org>');
  const from = parseForwardPath('<alice@example.com>');
  assert.ok(to.ok && from.ok);
  return { sender: from.path, recipients: [{ mailbox: to.path }], body: '7BIT', smtputf8: false, size: 10, ...(requireTls ? { requireTls: true } : {}) };
}

/** Through STARTTLS, 220, the handshake (tlsEstablished) and the second EHLO. */
function inTls(ehloAfter: string[]): ClientSession {
  const s = greeted(['STARTTLS', 'PIPELINING']);
  assert.deepEqual(writes(s.starttls()), ['STARTTLS\r\n']);
  assert.equal(s.awaiting, 'starttls');
  assert.deepEqual(kinds(s.receive(reply(220, 'go ahead'))), ['start-tls']);
  assert.equal(s.awaiting, 'starttls', 'the handshake runs under the starttls step (its timer)');
  assert.deepEqual(writes(s.tlsEstablished()), ['EHLO relay.test\r\n']);
  assert.equal(s.capabilities.starttls, false, 'capabilities forgotten until the new EHLO');
  assert.deepEqual(kinds(s.receive(reply(250, 'mx.test', ...ehloAfter))), ['ready']);
  assert.equal(s.tls, true);
  return s;
}

describe('protocol/client-session: STARTTLS, AUTH, REQUIRETLS', () => {
  it('STARTTLS 220 → start-tls; after the handshake EHLO again and the new capabilities', () => {
    const s = inTls(['AUTH PLAIN LOGIN', 'REQUIRETLS']);
    assert.deepEqual(s.capabilities.auth, ['PLAIN', 'LOGIN']);
    assert.ok(s.capabilities.keywords.has('REQUIRETLS'));
    assert.throws(() => s.starttls(), ProtocolError, 'no second STARTTLS');
  });

  it('a refused STARTTLS (454) leaves the session ready in plain text; 421 ends it', () => {
    const s = greeted(['STARTTLS']);
    s.starttls();
    assert.deepEqual(kinds(s.receive(reply(454, 'TLS not available'))), ['starttls-refused', 'ready']);
    assert.equal(s.tls, false);
    const t = greeted(['STARTTLS']);
    t.starttls();
    const out = t.receive(reply(421, 'bye'));
    assert.ok(kinds(out).includes('session-failed'));
    assert.ok(t.closed);
  });

  it('AUTH before TLS is a caller bug, refused before a byte is written', () => {
    const s = greeted(['AUTH PLAIN LOGIN']);
    assert.throws(() => s.auth('PLAIN', 'u', 'p'), /before TLS/);
  });

  it('AUTH PLAIN sends the initial response; 235 → authenticated, ready', () => {
    const s = inTls(['AUTH PLAIN']);
    const [line] = writes(s.auth('PLAIN', 'user', 'secret'));
    assert.equal(line, `AUTH PLAIN ${Buffer.from('\0user\0secret').toString('base64')}\r\n`);
    assert.equal(s.awaiting, 'auth');
    assert.deepEqual(kinds(s.receive(reply(235, 'ok'))), ['authenticated', 'ready']);
  });

  it('AUTH LOGIN answers two 334 challenges; a 535 fails the session with the reply at step auth', () => {
    const s = inTls(['AUTH LOGIN']);
    assert.deepEqual(writes(s.auth('LOGIN', 'user', 'secret')), ['AUTH LOGIN\r\n']);
    assert.deepEqual(writes(s.receive(reply(334, 'VXNlcm5hbWU6'))), [`${Buffer.from('user').toString('base64')}\r\n`]);
    assert.deepEqual(writes(s.receive(reply(334, 'UGFzc3dvcmQ6'))), [`${Buffer.from('secret').toString('base64')}\r\n`]);
    const out = s.receive({ code: 535, enhanced: '5.7.8', lines: ['bad credentials'] });
    const failed = out.find((e) => e.kind === 'session-failed');
    assert.ok(failed && failed.kind === 'session-failed');
    assert.deepEqual(failed.fact, { kind: 'reply', step: 'auth', reply: { code: 535, enhanced: '5.7.8', lines: ['bad credentials'] } });
    assert.deepEqual(writes(out), ['QUIT\r\n']);
  });

  it('REQUIRETLS: MAIL carries it to a TLS peer that announces it; otherwise a local refusal before MAIL', () => {
    const s = inTls(['REQUIRETLS']);
    assert.match(writes(s.send(message(true)))[0] ?? '', /^MAIL FROM:<alice@example\.com> REQUIRETLS\r\n/);
    const noKeyword = inTls(['PIPELINING']);
    const refused = noKeyword.send(message(true));
    const tx = refused.find((e) => e.kind === 'transaction');
    assert.ok(tx && tx.kind === 'transaction');
    assert.equal(tx.facts[0]?.kind, 'preflight');
    assert.deepEqual(writes(refused), [], 'nothing written');
    const plain = greeted(['REQUIRETLS']);
    const f = plain.send(message(true)).find((e) => e.kind === 'transaction');
    assert.ok(f && f.kind === 'transaction' && f.facts[0]?.kind === 'preflight' && /not in TLS/.test(f.facts[0].detail));
    assert.doesNotMatch(writes(greeted(['REQUIRETLS']).send(message(false)))[0] ?? '', /REQUIRETLS/);
  });
});
