/**
 * Inbound abuse limits against a real Postwire on real sockets: concurrent connections per
 * client IP (the N+1th gets 421 4.7.0 before any other SMTP), messages and recipients per window
 * per client IP (451 4.7.1, nothing accepted beyond the limit, accepted again once the window has
 * refilled), the tarpit delaying replies while other sessions are served at once, the exemption
 * list (loopback by default), and the refusals counted in /metrics.
 *
 * The test clients connect from 127.0.0.1, which --limits-exempt exempts by default; each test
 * that needs the limits sets the list to a network the clients are not in.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../support/raw-client.js';
import { startTestServer } from '../support/server.js';
import { systemClock } from '../../src/util/index.js';
import type { Clock } from '../../src/util/index.js';

/** Exempts a documentation network only, so 127.0.0.1 is subject to every limit. */
const NOT_EXEMPT = ['--limits-exempt', '192.0.2.0/24'];

async function session(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  assert.equal((await c.reply()).code, 220);
  assert.equal((await c.command('EHLO client.test')).code, 250);
  return c;
}

/** MAIL, the recipients, DATA; the replies as `code enhanced-text`. */
async function transaction(c: RawClient, rcpts: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const mail = await c.command('MAIL FROM:<app@client.test>');
  out.push(`${mail.code} ${mail.text}`);
  if (mail.code !== 250) return out;
  let accepted = 0;
  for (const r of rcpts) {
    const reply = await c.command(`RCPT TO:<${r}>`);
    out.push(`${reply.code} ${reply.text}`);
    if (reply.code === 250) accepted++;
  }
  if (accepted === 0) {
    await c.command('RSET');
    return out;
  }
  assert.equal((await c.command('DATA')).code, 354);
  const done = await c.command('Subject: limits\r\n\r\nhello\r\n.');
  out.push(`${done.code} ${done.text}`);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The system clock, plus whatever the test skips ahead: the rates are decided on the server's
 * injected clock, so a loaded machine cannot refill a bucket between two commands, and a test
 * can let a window pass without waiting for it.
 */
function skippingClock(): Clock & { skip(ms: number): void } {
  let offset = 0;
  return {
    now: () => systemClock.now() + offset,
    setTimer: (ms, onFire) => systemClock.setTimer(ms, onFire),
    skip: (ms) => void (offset += ms),
  };
}

async function metricsOf(admin: { host: string; port: number } | undefined): Promise<string> {
  assert.ok(admin, 'the test server runs an admin listener');
  return (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
}

describe('abuse limits', () => {
  it('refuses the N+1th concurrent connection from one IP with 421 4.7.0 before any other SMTP, and admits it once one closed', async () => {
    const server = await startTestServer(['--max-connections-per-ip', '2', '--admin', '127.0.0.1:0', ...NOT_EXEMPT]);
    try {
      const a = await RawClient.connect(server.port);
      const b = await RawClient.connect(server.port);
      assert.equal((await a.reply()).code, 220);
      assert.equal((await b.reply()).code, 220);
      const c = await RawClient.connect(server.port);
      const refused = await c.reply();
      assert.equal(refused.code, 421);
      assert.match(refused.text, /^4\.7\.0 .*Too many connections from your address \(at most 2 at once\)/);
      await c.waitClosed();
      a.close();
      await a.waitClosed();
      // The server learns of the close asynchronously; retry until the slot is free.
      let d: RawClient | undefined;
      for (let i = 0; i < 50 && d === undefined; i++) {
        const attempt = await RawClient.connect(server.port);
        if ((await attempt.reply()).code === 220) d = attempt;
        else await sleep(20);
      }
      assert.ok(d, 'a connection was admitted again after one closed');
      const refusals = Number(/^postwire_smtpd_limit_refusals_total\{limit="connections-per-ip"\} (\d+)$/m.exec(await metricsOf(server.server.admin))?.[1]);
      assert.ok(refusals >= 1, `connections-per-ip refusals counted: ${refusals}`);
      d.close();
      b.close();
    } finally {
      await server.stop();
    }
  });

  it('limits messages per window per client IP: the next MAIL gets 451 4.7.1, nothing more is queued, and after the window it is accepted', async () => {
    const clock = skippingClock();
    const server = await startTestServer(['--ip-message-rate', '2', '--rate-window', '1h', '--admin', '127.0.0.1:0', ...NOT_EXEMPT], { clock });
    try {
      const c = await session(server.port);
      assert.match((await transaction(c, ['one@dest.test'])).at(-1) ?? '', /^250 2\.0\.0 Ok: queued/);
      assert.match((await transaction(c, ['two@dest.test'])).at(-1) ?? '', /^250 2\.0\.0 Ok: queued/);
      const refused = await transaction(c, ['three@dest.test']);
      // 30m for the next message, less the (real) seconds this test has run.
      assert.equal(refused.length, 1);
      assert.match(refused[0] ?? '', /^451 4\.7\.1 Rate limit: at most 2 messages per 1h from your address; try again in (30m|29m\d+s)$/);
      // A second session from the same address shares the allowance.
      const other = await session(server.port);
      assert.match((await other.command('MAIL FROM:<x@client.test>')).text, /^4\.7\.1 Rate limit/);
      assert.equal((await server.messages()).length, 2, 'nothing accepted beyond the limit');
      clock.skip(20 * 60_000);
      assert.match((await c.command('MAIL FROM:<app@client.test>')).text, /^4\.7\.1 .*try again in (10m|9m\d+s)$/, 'two thirds of the way to the next message');
      clock.skip(10 * 60_000); // one message refills every 30 minutes
      assert.match((await transaction(c, ['four@dest.test'])).at(-1) ?? '', /^250 2\.0\.0 Ok: queued/);
      assert.equal((await server.messages()).length, 3);
      const metrics = await metricsOf(server.server.admin);
      assert.match(metrics, /^postwire_smtpd_limit_refusals_total\{limit="ip-messages"\} 3$/m);
      c.close();
      other.close();
    } finally {
      await server.stop();
    }
  });

  it('limits recipients per window per client IP: the RCPT over it gets 451 4.7.1 and the message goes to the accepted ones only', async () => {
    const clock = skippingClock();
    const server = await startTestServer(['--ip-recipient-rate', '3', '--rate-window', '1h', ...NOT_EXEMPT], { clock });
    try {
      const c = await session(server.port);
      const replies = await transaction(c, ['a@dest.test', 'b@dest.test', 'c@dest.test', 'd@dest.test', 'e@dest.test']);
      assert.deepEqual(replies.slice(1, 6).map((r) => r.slice(0, 9)), ['250 2.1.5', '250 2.1.5', '250 2.1.5', '451 4.7.1', '451 4.7.1']);
      assert.match(replies[4] ?? '', /at most 3 recipients per 1h from your address; try again in (20m|19m\d+s)$/);
      assert.match(replies[6] ?? '', /^250 2\.0\.0 Ok: queued/);
      const [stored] = await server.messages();
      assert.deepEqual(stored?.recipients.map((r) => r.address), ['a@dest.test', 'b@dest.test', 'c@dest.test']);
      clock.skip(20 * 60_000); // one recipient refills every 20 minutes
      assert.deepEqual((await transaction(c, ['f@dest.test'])).map((r) => r.slice(0, 3)), ['250', '250', '250']);
      c.close();
    } finally {
      await server.stop();
    }
  });

  it('tarpits a session after repeated errors: every further reply waits, longer with each error', async () => {
    const server = await startTestServer(['--tarpit-after', '2', '--tarpit-delay', '300ms', '--tarpit-max-delay', '500ms', '--admin', '127.0.0.1:0', ...NOT_EXEMPT]);
    try {
      const bad = await session(server.port);
      const timed = async (line: string): Promise<{ code: number; ms: number }> => {
        const started = performance.now();
        const r = await bad.command(line);
        return { code: r.code, ms: performance.now() - started };
      };
      assert.equal((await timed('BOGUS1')).code, 500);
      assert.equal((await timed('BOGUS2')).code, 500);
      const third = await timed('BOGUS3');
      assert.equal(third.code, 500);
      assert.ok(third.ms >= 290, `the reply after 2 errors waited ${third.ms.toFixed(0)}ms, expected at least 300ms`);
      const fourth = await timed('NOOP');
      assert.equal(fourth.code, 250, 'a good command is delayed too once in the tarpit, and is still answered');
      assert.ok(fourth.ms >= 490, `the reply after 3 errors waited ${fourth.ms.toFixed(0)}ms, expected at least 500ms (2 steps, capped)`);
      const metrics = await metricsOf(server.server.admin);
      assert.match(metrics, /^postwire_smtpd_tarpit_delays_total 2$/m);
      assert.match(metrics, /^postwire_smtpd_tarpit_seconds_total 0\.8$/m);
      bad.close();
    } finally {
      await server.stop();
    }
  });

  it('serves other sessions in full while one waits in the tarpit (a timer, not a busy wait)', async () => {
    // A long delay, so that the other session finishes first even on a loaded machine.
    const server = await startTestServer(['--tarpit-after', '1', '--tarpit-delay', '8s', '--tarpit-max-delay', '8s', ...NOT_EXEMPT]);
    try {
      const bad = await session(server.port);
      assert.equal((await bad.command('BOGUS')).code, 500);
      const order: string[] = [];
      const slow = bad.command('NOOP').then((r) => order.push(`tarpitted ${r.code}`));
      const good = await session(server.port);
      assert.match((await transaction(good, ['x@dest.test'])).at(-1) ?? '', /^250 2\.0\.0 Ok: queued/);
      order.push('other session queued its message');
      await slow;
      assert.deepEqual(order, ['other session queued its message', 'tarpitted 250']);
      bad.close();
      good.close();
    } finally {
      await server.stop();
    }
  });

  it('caps the tarpit delay below the command timeout, so a tarpitted session is slowed, not timed out', async () => {
    const server = await startTestServer(['--command-timeout', '400ms', '--tarpit-after', '1', '--tarpit-delay', '5s', '--tarpit-max-delay', '5s', ...NOT_EXEMPT]);
    try {
      const c = await session(server.port);
      assert.equal((await c.command('BOGUS')).code, 500);
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const r = await c.command('NOOP');
        assert.equal(r.code, 250, `reply ${i}: ${r.code} ${r.text}`);
        assert.ok(performance.now() - started >= 190, 'delayed by half the command timeout');
      }
      c.close();
    } finally {
      await server.stop();
    }
  });

  it('does not apply the per-IP limits or the tarpit to exempt clients (loopback by default)', async () => {
    const server = await startTestServer([
      '--max-connections-per-ip', '1', '--ip-message-rate', '1', '--ip-recipient-rate', '1',
      '--tarpit-after', '1', '--tarpit-delay', '30s', '--tarpit-max-delay', '30s',
    ]);
    try {
      const a = await session(server.port);
      const b = await session(server.port); // a second connection although the limit is 1
      for (const c of [a, b]) {
        assert.deepEqual((await transaction(c, ['r1@dest.test', 'r2@dest.test'])).map((r) => r.slice(0, 3)), ['250', '250', '250', '250']);
      }
      const started = performance.now();
      for (let i = 0; i < 4; i++) assert.equal((await a.command('BOGUS')).code, 500);
      // Tarpitted, the last three would wait 30s each.
      assert.ok(performance.now() - started < 30_000, 'no tarpit delay for an exempt client');
      assert.equal((await server.messages()).length, 2);
      a.close();
      b.close();
    } finally {
      await server.stop();
    }
  });
});
