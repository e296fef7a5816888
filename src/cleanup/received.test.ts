import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReceived, ipLiteral } from './received.js';
import { rfc5322Date } from '../util/index.js';

const base = {
  helo: 'client.example',
  clientIp: '192.0.2.7',
  hostname: 'mx.example.com',
  protocol: 'ESMTP',
  queueId: '01KB3Z4Q8M0000A1B2',
  forRecipient: 'someone@example.net' as string | undefined,
  utf8: false,
  nowMs: Date.UTC(2026, 10, 29, 18, 47, 1),
};

test('the Received: header follows RFC 5321 §4.4 and ends with CRLF', () => {
  assert.equal(
    formatReceived(base),
    'Received: from client.example ([192.0.2.7])\r\n\tby mx.example.com (Postwire) with ESMTP id 01KB3Z4Q8M0000A1B2\r\n\tfor <someone@example.net>;\r\n\tSun, 29 Nov 2026 18:47:01 +0000\r\n',
  );
});

test('no for clause without a single recipient; IPv6 and IPv4-mapped literals', () => {
  const text = formatReceived({ ...base, forRecipient: undefined, clientIp: '2001:db8::1' });
  assert.ok(!text.includes('for <'));
  assert.ok(text.includes('([IPv6:2001:db8::1])'));
  assert.equal(ipLiteral('::ffff:127.0.0.1'), '[127.0.0.1]');
});

test('client text can never break the header: CR, LF and controls are replaced', () => {
  const text = formatReceived({ ...base, helo: 'evil\r\nX-Injected: yes', forRecipient: 'a\r\nb@c' });
  assert.equal(text.split('\r\n').filter((l) => l.startsWith('X-Injected')).length, 0);
  assert.equal((text.match(/\r\n(?!\t|$)/g) ?? []).length, 0, 'every line after the first is a continuation');
  assert.equal(rfc5322Date(0), 'Thu, 01 Jan 1970 00:00:00 +0000');
});

test('UTF-8 HELO names survive in an SMTPUTF8 transaction, and are replaced otherwise', () => {
  assert.ok(formatReceived({ ...base, helo: 'bücher.example', utf8: true }).includes('from bücher.example '));
  assert.ok(formatReceived({ ...base, helo: 'bücher.example', utf8: false }).includes('from b?cher.example '));
});
