/**
 * @module smtpd/limits.test
 * The abuse limits through the Policy seam, on an explicit clock: per-IP and per-user keys (a
 * PolicyClient carrying `user`, as AUTH will fill it), the exemption list, 451 4.7.1 with the
 * limit and the retry time, refused requests costing nothing, reload keeping what was spent,
 * refusal logging limited per minute, IPv6 keyed per /64, and the tarpit's growing, capped delay.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InboundLimits, addressKey } from './limits.js';
import type { LimitName, LimitSettings } from './limits.js';
import type { Policy, PolicyClient, Verdict } from './policy.js';
import { parseCommand, reply } from '../protocol/index.js';
import type { Mailbox } from '../protocol/index.js';
import { silentLogger } from '../obs/index.js';
import type { Logger } from '../obs/index.js';

const MINUTE = 60_000;

function settings(over: Partial<LimitSettings['rates']> = {}, rest: Partial<LimitSettings> = {}): LimitSettings {
  return {
    exempt: ['127.0.0.0/8'],
    rates: { ipMessages: 2, ipRecipients: 3, userMessages: 4, userRecipients: 5, windowMs: MINUTE, maxKeys: 100, ...over },
    tarpit: { after: 2, stepMs: 100, maxMs: 250 },
    logPerMinute: 100,
    ...rest,
  };
}

const ACCEPT: Verdict = { accept: true };
const open: Policy = { onConnect: () => ACCEPT, onMail: () => ACCEPT, onRcpt: () => ACCEPT };

function mailbox(address: string): Mailbox {
  const parsed = parseCommand(`RCPT TO:<${address}>`);
  if (!parsed.ok || parsed.command.verb !== 'RCPT') throw new Error(`bad test address ${address}`);
  return parsed.command.to;
}

function client(ip: string, user?: string): PolicyClient {
  return { ip, session: 's1', helo: 'client.test', ...(user !== undefined ? { user } : {}) };
}

function harness(s: LimitSettings = settings(), inner: Policy = open, log: Logger = silentLogger) {
  let now = 1_000_000;
  const refusals: LimitName[] = [];
  const limits = new InboundLimits(s, { now: () => now, log, onRefusal: (l) => refusals.push(l) });
  const policy = limits.withRateLimits(inner);
  return {
    limits,
    refusals,
    advance: (ms: number) => void (now += ms),
    mail: async (c: PolicyClient) => policy.onMail(c, null, {}),
    rcpt: async (c: PolicyClient, to = 'x@y.test') => policy.onRcpt(c, mailbox(to), {}),
  };
}

const codeOf = (v: Verdict): string => (v.accept ? '250' : `${v.reply.code} ${v.reply.enhanced ?? ''}`);

test('messages per window per client IP: the next MAIL gets 451 4.7.1 saying the limit and when to retry', async () => {
  const h = harness();
  const a = client('192.0.2.1');
  assert.deepEqual([codeOf(await h.mail(a)), codeOf(await h.mail(a)), codeOf(await h.mail(a))], ['250', '250', '451 4.7.1']);
  const refused = await h.mail(a);
  assert.ok(!refused.accept);
  assert.equal(refused.reply.lines[0], 'Rate limit: at most 2 messages per 1m from your address; try again in 30s');
  assert.equal(codeOf(await h.mail(client('192.0.2.2'))), '250', 'another address has its own allowance');
  h.advance(30_000);
  assert.equal(codeOf(await h.mail(a)), '250', 'one message refilled after half the window');
  assert.equal(codeOf(await h.mail(a)), '451 4.7.1');
  assert.deepEqual(h.refusals, ['ip-messages', 'ip-messages', 'ip-messages']);
});

test('recipients per window per client IP; a recipient the inner policy refuses spends nothing', async () => {
  const relayOnlyToOk: Policy = {
    ...open,
    onRcpt: (_c, to) => (to.domain === 'ok.test' ? ACCEPT : { accept: false, reply: reply(554, '5.7.1', 'Relay access denied') }),
  };
  const h = harness(settings(), relayOnlyToOk);
  const a = client('192.0.2.1');
  const answers: string[] = [];
  for (const to of ['1@ok.test', 'probe@elsewhere.test', '2@ok.test', 'probe@elsewhere.test', '3@ok.test', '4@ok.test', 'probe@elsewhere.test']) {
    answers.push(codeOf(await h.rcpt(a, to)));
  }
  assert.deepEqual(answers, ['250', '554 5.7.1', '250', '554 5.7.1', '250', '451 4.7.1', '554 5.7.1']);
  assert.deepEqual(h.refusals, ['ip-recipients']);
});

test('an authenticated session is counted per user, from any address, even an exempt one', async () => {
  const h = harness();
  const fromA = client('192.0.2.1', 'alice');
  const fromB = client('198.51.100.7', 'alice');
  const fromLoopback = client('127.0.0.1', 'alice');
  assert.equal(codeOf(await h.mail(fromA)), '250');
  assert.equal(codeOf(await h.mail(fromB)), '250');
  assert.equal(codeOf(await h.mail(fromLoopback)), '250');
  assert.equal(codeOf(await h.mail(fromA)), '250');
  const over = await h.mail(fromB);
  assert.equal(codeOf(over), '451 4.7.1', 'the fifth message of alice, whatever the address');
  assert.ok(!over.accept && /at most 4 messages per 1m for your user/.test(over.reply.lines[0] ?? ''));
  assert.equal(codeOf(await h.mail(client('192.0.2.1', 'bob'))), '250', 'bob has his own allowance');
  assert.equal(codeOf(await h.mail(client('192.0.2.1'))), '250', 'the address itself is counted apart from its users');
  assert.deepEqual(h.refusals, ['user-messages']);
  for (let i = 0; i < 5; i++) assert.equal(codeOf(await h.rcpt(fromA)), '250');
  assert.equal(codeOf(await h.rcpt(fromLoopback)), '451 4.7.1');
});

test('exempt addresses are not counted; an empty exemption list counts loopback too', async () => {
  const h = harness();
  for (let i = 0; i < 20; i++) assert.equal(codeOf(await h.mail(client('127.0.0.1'))), '250');
  assert.equal(h.limits.isExempt('::ffff:127.0.0.1'), true);
  const strict = harness(settings({}, { exempt: [] }));
  assert.deepEqual([codeOf(await strict.mail(client('127.0.0.1'))), codeOf(await strict.mail(client('127.0.0.1'))), codeOf(await strict.mail(client('127.0.0.1')))], ['250', '250', '451 4.7.1']);
  assert.equal(strict.limits.tarpit('127.0.0.1', 1_000) !== undefined, true);
  assert.equal(h.limits.tarpit('127.0.0.1', 1_000), undefined, 'no tarpit for exempt clients');
});

test('a limit of 0 is off', async () => {
  const h = harness(settings({ ipMessages: 0 }));
  for (let i = 0; i < 50; i++) assert.equal(codeOf(await h.mail(client('192.0.2.1'))), '250');
});

test('reload changes the rules and keeps what clients have spent', async () => {
  const h = harness();
  const a = client('192.0.2.1');
  await h.mail(a);
  await h.mail(a);
  assert.equal(codeOf(await h.mail(a)), '451 4.7.1');
  h.limits.reconfigure(settings({ ipMessages: 10 }));
  assert.equal(codeOf(await h.mail(a)), '451 4.7.1', 'a SIGHUP is no way to reset a spent allowance');
  h.limits.reconfigure(settings({ ipMessages: 0 }));
  assert.equal(codeOf(await h.mail(a)), '250');
  h.limits.reconfigure(settings({}, { exempt: ['192.0.2.0/24'] }));
  assert.equal(h.limits.isExempt('192.0.2.1'), true);
});

test('IPv6 clients are counted per /64, IPv4-mapped ones as IPv4', async () => {
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), addressKey('2001:db8:1:2:bbbb::2'));
  assert.notEqual(addressKey('2001:db8:1:2::1'), addressKey('2001:db8:1:3::1'));
  assert.equal(addressKey('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(addressKey('192.0.2.1'), '192.0.2.1');
  const h = harness();
  await h.mail(client('2001:db8:1:2::1'));
  await h.mail(client('2001:db8:1:2::2'));
  assert.equal(codeOf(await h.mail(client('2001:db8:1:2::3'))), '451 4.7.1', 'rotating within a /64 does not help');
});

test('refusal log lines are limited per minute and the left-out ones are counted', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log: Logger = { ...silentLogger, warn: (fields: object) => void lines.push(fields as Record<string, unknown>), child: () => log };
  const h = harness(settings({}, { logPerMinute: 2 }), open, log);
  const a = client('192.0.2.1');
  for (let i = 0; i < 12; i++) await h.mail(a);
  assert.equal(h.refusals.length, 10, 'every refusal is counted');
  assert.equal(lines.length, 2, 'but only two are logged in the minute');
  assert.equal(lines[0]?.limit, 'ip-messages');
  assert.equal(lines[0]?.key, '192.0.2.1');
  h.advance(MINUTE);
  await h.mail(a);
  await h.mail(a);
  await h.mail(a);
  assert.equal(lines.length, 3);
  assert.equal(lines[2]?.suppressed, 8);
});

test('the tarpit: no delay before N errors, then growing per error, capped; 2xx, 452 and the rate limits\' 451 do not count', () => {
  const h = harness();
  const t = h.limits.tarpit('192.0.2.1', 10_000);
  assert.ok(t);
  const delays: number[] = [];
  const bad = reply(500, '5.5.2', 'Syntax error');
  for (const r of [reply(250, '2.1.0', 'Ok'), bad, reply(452, '4.5.3', 'Too many recipients'), bad, bad, reply(451, '4.7.1', 'Rate limit'), bad, bad]) {
    delays.push(t.nextDelay());
    t.noteReply(r);
  }
  delays.push(t.nextDelay());
  assert.deepEqual(delays, [0, 0, 0, 0, 100, 200, 200, 250, 250]);
  assert.equal(t.errorCount, 5);
  const capped = h.limits.tarpit('192.0.2.1', 120);
  assert.ok(capped);
  for (let i = 0; i < 5; i++) capped.noteReply(bad);
  assert.equal(capped.nextDelay(), 120, 'never longer than the cap the connection gives');
  assert.equal(harness(settings({}, { tarpit: { after: 0, stepMs: 100, maxMs: 100 } })).limits.tarpit('192.0.2.1', 1_000), undefined);
});
