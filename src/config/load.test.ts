/**
 * @module config/load.test
 * loadConfig end to end: defaults, precedence (default < env < file < flag), every kind of value
 * good and bad with the exact message (the message is the interface an operator sees), repeated
 * and comma lists, IPv6 host:port, unknown flags/variables/keys with suggestions, unbuilt
 * features from every source, and config-file failures. Files go to a fresh temp directory.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from './index.js';

type Env = Record<string, string | undefined>;

function load(argv: readonly string[] = [], env: Env = {}, hostname = 'mx.example.test') {
  return loadConfig({ argv, env, hostname });
}

function good(argv: readonly string[] = [], env: Env = {}): Config {
  const r = load(argv, env);
  if (!r.ok) assert.fail(`expected a config, got:\n${r.errors.join('\n')}`);
  return r.config;
}

function bad(argv: readonly string[] = [], env: Env = {}): string[] {
  const r = load(argv, env);
  if (r.ok) assert.fail('expected errors, got a config');
  return r.errors;
}

const dir = mkdtempSync(join(tmpdir(), 'postwire-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function file(content: unknown): string {
  const path = join(dir, `c${files++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

test('defaults match DESIGN §3 and types.ts', () => {
  const c = good();
  assert.deepEqual(c, {
    listen: [{ host: '127.0.0.1', port: 2525 }],
    spool: './spool',
    queue: undefined,
    queueSchema: 'postwire',
    queueConnections: 10,
    nodeName: undefined,
    smarthost: undefined,
    dns: undefined,
    retry: [60_000, 300_000, 900_000, 3_600_000, 14_400_000],
    maxAge: 5 * 86_400_000,
    hostname: 'mx.example.test',
    admin: { host: '127.0.0.1', port: 8025 },
    adminToken: undefined,
    relayFrom: ['127.0.0.0/8', '::1/128'],
    bareNewline: 'normalize',
    limits: {
      maxConnections: 1000, maxConnectionsPerIp: 50, maxRecipients: 1000, maxMessageSize: 50 * 1024 * 1024,
      maxCommandLine: 512, maxBadCommands: 20, listenBacklog: 1024,
    },
    abuse: {
      exempt: ['127.0.0.0/8', '::1/128'], ipMessageRate: 1000, ipRecipientRate: 10_000, userMessageRate: 300, userRecipientRate: 3000,
      rateWindow: 60_000, rateMaxClients: 50_000, tarpitAfter: 10, tarpitDelay: 1000, tarpitMaxDelay: 10_000, logRate: 60,
    },
    timeouts: { command: 300_000, data: 180_000, shutdownGrace: 10_000 },
    tls: { cert: undefined, key: undefined },
    submission: undefined,
    auth: {
      users: undefined, withoutTls: 'off', senderLoginMatch: 'off', failuresPerIp: 5, failuresPerUser: 10,
      failureWindow: 900_000, failureDelay: 1_000, maxVerifications: 2,
    },
    delivery: { mode: 'on', mxPort: 25, destinationConcurrency: 20, maxInFlight: 200, destinationRate: 'unlimited', destinationBurst: 0, ambiguous: 'retry', longLines: 'wrap', delayWarning: 14_400_000, keepDone: 3_600_000, leaseTime: 120_000 },
    outboundTls: { policy: 'may', caFile: undefined, mtaSts: 'on', mtaStsPort: 443, mtaStsTimeout: 10_000, mtaStsMaxSize: 65_536 },
    routes: [],
    dkim: [],
    logLevel: 'info',
    logFormat: 'auto',
    metricsDestinations: 20,
    dkimMaxHeaderSize: 1024 * 1024,
  });
});

test('the config is deeply frozen and shares nothing with the defaults', () => {
  const c = good();
  for (const o of [c, c.listen, c.listen[0], c.retry, c.relayFrom, c.limits, c.timeouts, c.admin]) assert.ok(Object.isFrozen(o));
  assert.notEqual(good().listen, c.listen);
});

test('precedence: default < env < file < flag', () => {
  const path = file({ 'max-recipients': 30, spool: '/from/file' });
  const env = { POSTWIRE_MAX_RECIPIENTS: '20', POSTWIRE_SPOOL: '/from/env', POSTWIRE_MAX_BAD_COMMANDS: '7', POSTWIRE_CONFIG: path };
  assert.equal(good([], { POSTWIRE_MAX_RECIPIENTS: '20' }).limits.maxRecipients, 20);
  const c = good([], env);
  assert.equal(c.limits.maxRecipients, 30);
  assert.equal(c.spool, '/from/file');
  assert.equal(c.limits.maxBadCommands, 7, 'env still applies where the file is silent');
  const f = good(['--max-recipients', '40', '--config', path], env);
  assert.equal(f.limits.maxRecipients, 40);
  assert.equal(f.spool, '/from/file');
  assert.equal(f.limits.maxConnections, 1000, 'defaults fill the rest');
});

test('--config on the command line wins over POSTWIRE_CONFIG', () => {
  const a = file({ spool: '/a' });
  const b = file({ spool: '/b' });
  assert.equal(good(['--config', b], { POSTWIRE_CONFIG: a }).spool, '/b');
});

test('lists are replaced whole by a later source, not merged', () => {
  const c = good(['--listen', '127.0.0.1:2626'], { POSTWIRE_LISTEN: '127.0.0.1:2727,127.0.0.1:2828' });
  assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 2626 }]);
});

test('--listen repeats; env and flags take commas; IPv6 in brackets; port 0', () => {
  const c = good(['--listen', '127.0.0.1:0', '--listen=[::1]:25', '--listen', 'mail.example.com:587,0.0.0.0:2525']);
  assert.deepEqual(c.listen, [
    { host: '127.0.0.1', port: 0 }, { host: '::1', port: 25 }, { host: 'mail.example.com', port: 587 }, { host: '0.0.0.0', port: 2525 },
  ]);
  assert.deepEqual(good([], { POSTWIRE_LISTEN: '[::]:25,127.0.0.1:26' }).listen, [{ host: '::', port: 25 }, { host: '127.0.0.1', port: 26 }]);
  assert.deepEqual(good(['--listen', '127.0.0.1:0', '--listen', '127.0.0.1:0']).listen.length, 2, 'port 0 never collides');
});

test('host:port refusals name the flag and the fix', () => {
  const cases: Array<[string, RegExp]> = [
    ['localhost', /^--listen: "localhost" is not HOST:PORT \(the port is missing; e\.g\. /],
    ['::1:25', /^--listen: "::1:25" is not HOST:PORT \(an IPv6 address goes in brackets/],
    ['[::1]', /^--listen: "\[::1\]" is not HOST:PORT/],
    ['[::1:25', /^--listen: "\[::1:25" is not HOST:PORT/],
    ['[127.0.0.1]:25', /"127\.0\.0\.1" is not an IPv6 address/],
    ['127.0.0.1:65536', /port "65536" is not a number 0\.\.65535/],
    ['127.0.0.1:-1', /port "-1" is not a number/],
    ['127.0.0.1:', /port "" is not a number/],
    [':25', /the host is missing; use 0\.0\.0\.0 or \[::\]/],
    ['bad_host:25', /"bad_host" is neither an IP address nor a host name/],
    ['999.1.1.1:25', /"999\.1\.1\.1" is neither/],
    ['127.0.0.1:25,', /^--listen: "127\.0\.0\.1:25," has an empty item/],
  ];
  for (const [value, re] of cases) {
    const errors = bad(['--listen', value]);
    assert.equal(errors.length, 1, `${value}: ${errors.join(' | ')}`);
    assert.match(errors[0] ?? '', re, value);
  }
});

test('--listen with the same address twice is an error; --admin may not share a listener', () => {
  assert.deepEqual(bad(['--listen', '127.0.0.1:25', '--listen', '127.0.0.1:25']), ['--listen: 127.0.0.1:25 is listed twice']);
  assert.deepEqual(bad(['--admin', '127.0.0.1:2525']), ['--admin: 127.0.0.1:2525 is also an SMTP --listen address']);
  assert.deepEqual(bad([], { POSTWIRE_LISTEN: '[::1]:25,[0:0::1]:25'.replace('[0:0::1]', '[::1]') }),
    ['POSTWIRE_LISTEN: [::1]:25 is listed twice']);
});

test('--smarthost, --dns, --admin are validated and kept', () => {
  const c = good(['--smarthost', 'relay.example.net:587', '--dns', '[2001:db8::53]:53', '--admin', 'off']);
  assert.deepEqual(c.smarthost, { host: 'relay.example.net', port: 587 });
  assert.deepEqual(c.dns, { host: '2001:db8::53', port: 53 });
  assert.equal(c.admin, 'off');
  assert.deepEqual(good(['--admin', '[::1]:0']).admin, { host: '::1', port: 0 });
  assert.match(bad(['--smarthost', 'relay.example.net:0'])[0] ?? '', /^--smarthost: .*port "0" is not a number 1\.\.65535/);
  assert.deepEqual(bad(['--dns', 'ns.example.net:53']), ['--dns: "ns.example.net:53" needs an IP address, not a host name']);
  assert.match(bad(['--admin', 'on'])[0] ?? '', /^--admin: "on" is not HOST:PORT or "off"/);
});

test('integers: good values, and refusals with the range', () => {
  assert.equal(good(['--max-recipients', '1']).limits.maxRecipients, 1);
  assert.equal(good(['--max-recipients', '100000']).limits.maxRecipients, 100_000);
  assert.deepEqual(bad(['--max-recipients', 'abc']), ['--max-recipients: "abc" is not a whole number (expected 1..100000)']);
  assert.deepEqual(bad(['--max-recipients', '0']), ['--max-recipients: 0 is out of range (expected 1..100000)']);
  assert.deepEqual(bad(['--max-recipients', '1.5']), ['--max-recipients: "1.5" is not a whole number (expected 1..100000)']);
  assert.deepEqual(bad(['--max-command-line', '511']), ['--max-command-line: 511 is out of range (expected 512..65536)']);
  assert.deepEqual(bad([], { POSTWIRE_MAX_CONNECTIONS: '-3' }), ['POSTWIRE_MAX_CONNECTIONS: -3 is out of range (expected 1..1000000)']);
  const c = good(['--max-connections', '5', '--max-connections-per-ip', '2', '--max-bad-commands', '3', '--listen-backlog', '16']);
  assert.deepEqual([c.limits.maxConnections, c.limits.maxConnectionsPerIp, c.limits.maxBadCommands, c.limits.listenBacklog], [5, 2, 3, 16]);
});

test('sizes: units and plain octets; refusals', () => {
  assert.equal(good(['--max-message-size', '10MiB']).limits.maxMessageSize, 10 * 1024 * 1024);
  assert.equal(good(['--max-message-size', '10M']).limits.maxMessageSize, 10_000_000);
  assert.equal(good(['--max-message-size', '2048']).limits.maxMessageSize, 2048);
  assert.equal(good(['--max-message-size', '1GiB']).limits.maxMessageSize, 1024 ** 3);
  assert.match(bad(['--max-message-size', '10Q'])[0] ?? '', /^--max-message-size: "10Q" has an unknown unit "Q" \(expected octets, or a number with K, M, G/);
  assert.match(bad(['--max-message-size', 'big'])[0] ?? '', /^--max-message-size: "big" is not a size/);
  assert.deepEqual(bad(['--max-message-size', '9GiB']), ['--max-message-size: "9GiB" is too large (at most 8GiB)']);
  assert.deepEqual(bad(['--max-message-size', '0']), ['--max-message-size: "0" is too small (at least 1)']);
});

test('durations: every unit; ranges; the 100ms floor for tests', () => {
  const c = good(['--command-timeout', '100ms', '--data-timeout', '2s', '--shutdown-grace', '0ms', '--max-age', '1h30m']);
  assert.deepEqual([c.timeouts.command, c.timeouts.data, c.timeouts.shutdownGrace, c.maxAge], [100, 2000, 0, 5_400_000]);
  assert.equal(good(['--max-age', '2d']).maxAge, 2 * 86_400_000);
  assert.deepEqual(bad(['--command-timeout', '99ms']), ['--command-timeout: "99ms" is too short (at least 100ms)']);
  assert.deepEqual(bad(['--command-timeout', '2d']), ['--command-timeout: "2d" is too long (at most 1d)']);
  assert.deepEqual(bad(['--data-timeout', '30']), ['--data-timeout: "30" has no unit (write 30ms, 30s, 30m, ...)']);
  assert.match(bad(['--max-age', '5 days'])[0] ?? '', /^--max-age: "5 days" is not a duration/);
  assert.deepEqual(bad(['--shutdown-grace', '2h']), ['--shutdown-grace: "2h" is too long (at most 1h)']);
});

test('--retry: a list of durations', () => {
  assert.deepEqual(good(['--retry', '1s,10s,1m']).retry, [1000, 10_000, 60_000]);
  assert.deepEqual(good([], { POSTWIRE_RETRY: '500ms' }).retry, [500]);
  assert.deepEqual(bad(['--retry', '1m,5x']), ['--retry: "5x" is not a duration (expected a number with ms, s, m, h or d, e.g. 30s, 5m, 1h30m)']);
  assert.deepEqual(bad(['--retry', '1m,5min']), ['--retry: "5min" is not a duration (at "in"; expected a number with ms, s, m, h or d, e.g. 30s, 5m, 1h30m)']);
  assert.deepEqual(bad(['--retry', '1m,,5m']), ['--retry: "1m,,5m" has an empty item (a stray comma?)']);
  assert.deepEqual(bad(['--retry', '']), ['--retry: "" is empty (expected at least one DURATION)']);
});

test('enums: --bare-newline and --log-level', () => {
  assert.equal(good(['--bare-newline', 'reject']).bareNewline, 'reject');
  assert.equal(good(['--log-level', 'debug']).logLevel, 'debug');
  assert.deepEqual(bad(['--bare-newline', 'fix']), ['--bare-newline: "fix" is not one of normalize, reject']);
  assert.deepEqual(bad([], { POSTWIRE_LOG_LEVEL: 'loud' }), ['POSTWIRE_LOG_LEVEL: "loud" is not one of trace, debug, info, warn, error, fatal']);
});

test('--relay-from: CIDR lists, canonical; refusals', () => {
  assert.deepEqual(good(['--relay-from', '10.0.0.0/8, 2001:DB8::/32,192.0.2.7']).relayFrom, ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7/32']);
  assert.deepEqual(bad(['--relay-from', '10.0.0.1/8']), ['--relay-from: "10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8 or 10.0.0.1/32?)']);
  assert.deepEqual(bad(['--relay-from', '10.0.0.0/33']), ['--relay-from: "10.0.0.0/33" has prefix length 33, too long for IPv4 (at most 32)']);
  assert.deepEqual(good(['--config', file({ 'relay-from': [] })]).relayFrom, [], 'an empty list (nobody relays) is allowed');
});

test('--hostname: host names and address literals; a bad system name is reported as such', () => {
  assert.equal(good(['--hostname', 'mx1.example.com']).hostname, 'mx1.example.com');
  assert.equal(good(['--hostname', '[192.0.2.1]']).hostname, '[192.0.2.1]');
  assert.equal(good(['--hostname', '[IPv6:2001:db8::1]']).hostname, '[IPv6:2001:db8::1]');
  assert.match(bad(['--hostname', 'bad_name'])[0] ?? '', /^--hostname: "bad_name" is not a host name/);
  assert.match(bad(['--hostname=-x.example'])[0] ?? '', /^--hostname: "-x\.example" is not a host name/);
  const r = load([], {}, 'my_box');
  assert.ok(!r.ok);
  if (!r.ok) assert.match(r.errors[0] ?? '', /^--hostname: the system host name "my_box" is not a host name .*; set --hostname or POSTWIRE_HOSTNAME$/);
  assert.equal(good(['--hostname', 'ok.example']).hostname, 'ok.example', 'a flag spares a bad system name');
});

test('TLS and AUTH settings: pairs and prerequisites are checked, from every source', () => {
  const c = good(['--tls-cert', 'cert.pem', '--tls-key', 'key.pem', '--submission', '127.0.0.1:465', '--users', 'users.txt', '--auth-without-tls', 'loopback']);
  assert.deepEqual([c.tls, c.submission, c.auth.users, c.auth.withoutTls, c.auth.senderLoginMatch], [{ cert: 'cert.pem', key: 'key.pem' }, { host: '127.0.0.1', port: 465 }, 'users.txt', 'loopback', 'off']);
  assert.deepEqual(bad(['--tls-cert', 'cert.pem']), ['--tls-cert: needs --tls-key too (the certificate and its private key)']);
  assert.deepEqual(bad(['--submission', '127.0.0.1:465']), ['--submission: the implicit-TLS listener needs --tls-cert and --tls-key']);
  assert.deepEqual(bad(['--sender-login-match', 'on']), ['--sender-login-match: "on" needs --users (the addresses are in the user file)']);
  const path = file({ 'tls-key': 'key.pem' });
  assert.deepEqual(bad(['--config', path]), [`${path}: key "tls-key": needs --tls-cert too (the certificate and its private key)`]);
});

test('the shared queue: a postgres URL, a schema name, a node name', () => {
  const c = good(['--queue', 'postgres://u@db:5432/mail', '--queue-schema', 'relay_1', '--node-name', 'mx-a', '--lease-time', '30s', '--queue-connections', '4']);
  assert.deepEqual([c.queue, c.queueSchema, c.nodeName, c.delivery.leaseTime, c.queueConnections], ['postgres://u@db:5432/mail', 'relay_1', 'mx-a', 30_000, 4]);
  assert.equal(good([], { POSTWIRE_QUEUE: 'postgresql://db/x' }).queue, 'postgresql://db/x');
  assert.deepEqual(bad(['--queue', '/var/spool/postwire']), ['--queue: "/var/spool/postwire" is not a postgres:// URL (the embedded queue is --spool DIR)']);
  assert.deepEqual(bad(['--queue-schema', 'Relay; DROP']), ['--queue-schema: "Relay; DROP" is not a schema name (lower-case letters, digits and _, at most 63)']);
  assert.deepEqual(bad(['--node-name', 'a b']), ['--node-name: "a b" must be 1 to 40 visible ASCII characters']);
});

test('unknown flags, stray arguments, missing values, repeats', () => {
  assert.deepEqual(bad(['--max-recipents', '5']), ['--max-recipents: unknown flag (did you mean --max-recipients?)']);
  assert.deepEqual(bad(['--frobnicate']), ['--frobnicate: unknown flag']);
  assert.deepEqual(bad(['-v']), ['-v: unknown flag']);
  assert.deepEqual(bad(['serve']), ['unexpected argument "serve" (settings are flags: --name VALUE)']);
  assert.deepEqual(bad(['--spool']), ['--spool: needs a value (DIR)']);
  assert.deepEqual(bad(['--spool', '--listen', '127.0.0.1:25']), [
    '--spool: needs a value (DIR), got the flag "--listen" (write --spool=--listen if that is the value)',
    'unexpected argument "127.0.0.1:25" (settings are flags: --name VALUE)',
  ]);
  assert.equal(good(['--spool=-odd-dir']).spool, '-odd-dir');
  assert.deepEqual(bad(['--spool', 'a', '--spool', 'b']), ['--spool: given 2 times (only --listen may be repeated)']);
  assert.deepEqual(bad(['--spool', '']), ['--spool: is empty (expected DIR)']);
});

test('every error is reported, not just the first', () => {
  const errors = bad(['--max-recipients', 'x', '--bogus', '--command-timeout', '1'], { POSTWIRE_SPOOL: '  ', POSTWIRE_NOPE: '1' });
  assert.equal(errors.length, 5, errors.join('\n'));
});

test('environment: unknown POSTWIRE_* is an error; other variables and empty values are ignored', () => {
  assert.deepEqual(bad([], { POSTWIRE_MAX_RECIPENTS: '5' }), ['POSTWIRE_MAX_RECIPENTS: unknown setting (did you mean POSTWIRE_MAX_RECIPIENTS?)']);
  assert.deepEqual(good([], { PATH: '/bin', HOME: '/root', POSTWIRE_SMARTHOST: '', POSTWIRE_SPOOL: undefined }).smarthost, undefined);
  assert.match(bad([], { POSTWIRE_SPOOL: '   ' })[0] ?? '', /^POSTWIRE_SPOOL: is empty/);
  assert.match(bad([], { POSTWIRE_LISTEN: 'nope' })[0] ?? '', /^POSTWIRE_LISTEN: "nope" is not HOST:PORT/);
});

test('config file: JSON values of every type', () => {
  const path = file({
    listen: ['127.0.0.1:2600', '[::1]:2600'], spool: '/var/spool/postwire', smarthost: 'relay.example.net:25',
    retry: ['1m', '1h'], 'max-age': '3d', 'relay-from': '10.0.0.0/8,192.168.0.0/16', 'max-recipients': 100,
    'max-message-size': '25MiB', 'max-command-line': '1024', 'command-timeout': '1m', 'bare-newline': 'reject', admin: 'off',
  });
  const c = good(['--config', path]);
  assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 2600 }, { host: '::1', port: 2600 }]);
  assert.equal(c.spool, '/var/spool/postwire');
  assert.deepEqual(c.retry, [60_000, 3_600_000]);
  assert.equal(c.maxAge, 3 * 86_400_000);
  assert.deepEqual(c.relayFrom, ['10.0.0.0/8', '192.168.0.0/16']);
  assert.equal(c.limits.maxRecipients, 100);
  assert.equal(c.limits.maxMessageSize, 25 * 1024 * 1024);
  assert.equal(c.limits.maxCommandLine, 1024);
  assert.equal(c.bareNewline, 'reject');
  assert.equal(c.admin, 'off');
  assert.equal(good(['--config', file({ 'max-message-size': 1000 })]).limits.maxMessageSize, 1000);
});

test('config file: errors name the file and the key', () => {
  const typo = file({ 'max-recipents': 5 });
  assert.deepEqual(bad(['--config', typo]), [`${typo}: key "max-recipents" is unknown (did you mean "max-recipients"?)`]);
  const camel = file({ maxRecipients: 5 });
  assert.deepEqual(bad(['--config', camel]), [`${camel}: key "maxRecipients" is unknown (did you mean "max-recipients"?)`]);
  const far = file({ colour: 'blue' });
  assert.deepEqual(bad(['--config', far]), [`${far}: key "colour" is unknown`]);
  const value = file({ 'max-recipients': 'lots' });
  assert.deepEqual(bad(['--config', value]), [`${value}: key "max-recipients": "lots" is not a whole number (expected 1..100000)`]);
  const unitless = file({ 'max-age': 5 });
  assert.deepEqual(bad(['--config', unitless]), [`${unitless}: key "max-age": 5 has no unit (write a string such as "5s" or "5ms")`]);
  const wrongType = file({ spool: 5, listen: [2525], retry: true, 'log-level': null });
  assert.deepEqual(bad(['--config', wrongType]), [
    `${wrongType}: key "listen": holds a value that is not a string (expected a list of strings or one comma-separated string)`,
    `${wrongType}: key "spool": is a number (expected a string (DIR))`,
    `${wrongType}: key "retry": is a boolean (expected a list of strings or one comma-separated string)`,
    `${wrongType}: key "log-level": is null (expected a string (LEVEL))`,
  ]);
  const nested = file({ config: 'other.json' });
  assert.deepEqual(bad(['--config', nested]), [`${nested}: key "config" is not allowed in a config file (files do not include other files)`]);
  const none = file({ listen: [], retry: [] });
  assert.deepEqual(bad(['--config', none]), [
    `${none}: key "listen": "" is empty (expected at least one HOST:PORT)`,
    `${none}: key "retry": "" is empty (expected at least one DURATION)`,
  ]);
  const list = file({ spool: ['a', 'b'] });
  assert.deepEqual(bad(['--config', list]), [`${list}: key "spool": is a list (expected a string (DIR))`]);
});

test('config file: unreadable, not JSON, not an object', () => {
  const missing = join(dir, 'missing.json');
  const m = bad(['--config', missing]);
  assert.equal(m.length, 1);
  assert.match(m[0] ?? '', new RegExp(`^--config: cannot read "${missing.replaceAll('/', '\\/')}": ENOENT`));
  assert.match(bad([], { POSTWIRE_CONFIG: missing })[0] ?? '', /^POSTWIRE_CONFIG: cannot read/);
  const broken = file('{"spool": ');
  assert.match(bad(['--config', broken])[0] ?? '', new RegExp(`^${broken}: not valid JSON: `));
  const arr = file([1, 2]);
  assert.match(bad(['--config', arr])[0] ?? '', new RegExp(`^${arr}: expected a JSON object of settings`));
});

test('routes come from the config file, each error naming the route and field', () => {
  const good = file({
    routes: [
      { pattern: 'example.com', smarthost: 'relay.example.net:587', concurrency: 5 },
      { pattern: '*.example.org', mx: true, retry: '30s,2m', tls: 'may' },
      { pattern: '*', smarthost: '[::1]:2626', tls: 'verify' },
    ],
  });
  const r = load(['--config', good]);
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  assert.deepEqual(r.config.routes, [
    { pattern: 'example.com', nextHop: { kind: 'smarthost', host: 'relay.example.net', port: 587 }, concurrency: 5 },
    { pattern: '*.example.org', nextHop: { kind: 'mx' }, retry: [30_000, 120_000], tls: 'may' },
    { pattern: '*', nextHop: { kind: 'smarthost', host: '::1', port: 2626 }, tls: 'verify' },
  ]);
  const errors = bad(['--config', file({
    routes: [
      { pattern: 'a..b', mx: true },
      { pattern: 'x.test', smarthost: 'nope' },
      { pattern: 'y.test', mx: true, tls: 'paranoid' },
      { pattern: 'z.test', mx: true, colour: 'blue' },
      { pattern: 'w.test' },
      { pattern: 'q.test', mx: true },
      { pattern: 'Q.test.', mx: true },
    ],
  })]);
  const text = errors.join('\n');
  assert.match(text, /routes\[0\]: "pattern" must be a domain/);
  assert.match(text, /routes\[1\]: "smarthost": .*not HOST:PORT/);
  assert.match(text, /routes\[2\]: "tls" must be one of none, may, encrypt, verify, got "paranoid"/);
  assert.match(text, /routes\[3\]: field "colour" is unknown/);
  assert.match(text, /routes\[4\]: needs a next hop/);
  assert.match(text, /routes\[6\]: the same pattern as routes\[5\]/);
  assert.deepEqual(load([]).ok && (load([]) as { config: { routes: unknown } }).config.routes, []);
});

test('--admin off loopback needs --admin-token; loopback does not', () => {
  assert.ok(bad(['--admin', '0.0.0.0:8025']).some((e) => /^--admin: 0\.0\.0\.0:8025 is not a loopback address.*--admin-token/.test(e)));
  assert.ok(bad(['--admin', '[2001:db8::1]:8025']).some((e) => e.includes('--admin-token')));
  assert.equal(good(['--admin', '0.0.0.0:8025', '--admin-token', 's3cret-token']).adminToken, 's3cret-token');
  assert.equal(good(['--admin', '0.0.0.0:8025'], { POSTWIRE_ADMIN_TOKEN: 'from-env' }).adminToken, 'from-env');
  for (const host of ['127.0.0.1', '127.1.2.3', '[::1]', 'localhost']) assert.equal(good(['--admin', `${host}:8025`]).adminToken, undefined, host);
  assert.equal(good(['--admin', 'off']).admin, 'off');
});

function toml(text: string, ext = 'toml'): string {
  const path = join(dir, `c${files++}.${ext}`);
  writeFileSync(path, text);
  return path;
}

test('TOML config file: settings, lists, numbers and [[route]] tables', () => {
  const path = toml([
    '# a comment',
    'listen = ["127.0.0.1:2600", "[::1]:2600"]',
    'max-recipients = 30',
    'max-message-size = "10MiB"',
    'retry = "1m,10m"',
    'relay-from = []',
    '',
    '[[route]]',
    'pattern = "example.com"',
    'smarthost = "relay.example.net:587"',
    'concurrency = 5',
    '',
    '[[route]]',
    'pattern = "*"',
    'mx = true',
  ].join('\n'));
  const c = good(['--config', path]);
  assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 2600 }, { host: '::1', port: 2600 }]);
  assert.equal(c.limits.maxRecipients, 30);
  assert.equal(c.limits.maxMessageSize, 10 * 1024 * 1024);
  assert.deepEqual(c.retry, [60_000, 600_000]);
  assert.deepEqual(c.relayFrom, []);
  assert.deepEqual(c.routes, [
    { pattern: 'example.com', nextHop: { kind: 'smarthost', host: 'relay.example.net', port: 587 }, concurrency: 5 },
    { pattern: '*', nextHop: { kind: 'mx' } },
  ]);
  assert.equal(good(['--config', path, '--max-recipients', '40']).limits.maxRecipients, 40, 'flags override the file');
});

test('TOML config file: every error names the file, the line and the key', () => {
  const typo = toml('spool = "/x"\n\nmax-recipents = 5\n');
  assert.deepEqual(bad(['--config', typo]), [`${typo}:3: key "max-recipents" is unknown (did you mean "max-recipients"?)`]);
  const value = toml('max-recipients = "lots"\n');
  assert.deepEqual(bad(['--config', value]), [`${value}:1: key "max-recipients": "lots" is not a whole number (expected 1..100000)`]);
  const syntax = toml('spool = "/x"\nmax-age = 5d\n');
  assert.match(bad(['--config', syntax])[0] ?? '', new RegExp(`^${syntax}:2:\\d+: not valid TOML: `));
  const routes = toml('routes = []\n');
  assert.deepEqual(bad(['--config', routes]), [`${routes}:1: key "routes" is unknown (did you mean "route"?) (routes are [[route]] tables)`]);
  const route = toml('[[route]]\npattern = "*"\n\n[[route]]\npattern = "x.test"\nsmarthost = 7\n');
  assert.deepEqual(bad(['--config', route]), [
    `${route}:1: route[0]: needs a next hop: "smarthost": "HOST:PORT" or "mx": true`,
    `${route}:4: route[1]: "smarthost" must be "HOST:PORT"`,
  ]);
  const unitless = toml('max-age = 5\n');
  assert.deepEqual(bad(['--config', unitless]), [`${unitless}:1: key "max-age": 5 has no unit (write a string such as "5s" or "5ms")`]);
});

test('config file type is chosen by extension: .toml, .json, anything else refused', () => {
  assert.equal(good(['--config', toml('{"spool": "/j"}', 'json')]).spool, '/j');
  assert.equal(good(['--config', toml('spool = "/t"', 'TOML')]).spool, '/t');
  const yaml = toml('spool: /y', 'yaml');
  assert.deepEqual(bad(['--config', yaml]), [`${yaml}: unknown config file type: name it *.toml (TOML, the documented format) or *.json (JSON)`]);
});

test('route AUTH: user and password file together, smart hosts only, the file read now but only its path kept', () => {
  const secret = join(dir, 'relay.password');
  writeFileSync(secret, 's3cret-Pa55\n');
  const r = load(['--config', file({ routes: [{ pattern: '*', smarthost: 'smtp.provider.test:587', tls: 'verify', auth_user: 'relay@example.com', auth_password_file: secret }] })]);
  assert.ok(r.ok, r.ok ? '' : r.errors.join('\n'));
  assert.deepEqual(r.config.routes[0]?.auth, { user: 'relay@example.com', passwordFile: secret });
  assert.ok(!JSON.stringify(r.config).includes('s3cret'), 'the password is not in Config');
  const text = bad(['--config', file({
    routes: [
      { pattern: 'a.test', mx: true, auth_user: 'u', auth_password_file: secret },
      { pattern: 'b.test', smarthost: 'h.test:587', auth_user: 'u' },
      { pattern: 'c.test', smarthost: 'h.test:587', auth_user: 'u', auth_password_file: join(dir, 'missing') },
    ],
  })]).join('\n');
  assert.match(text, /routes\[0\]: "auth_user" needs a "smarthost" route/);
  assert.match(text, /routes\[1\]: "auth_password_file" must name the file/);
  assert.match(text, /routes\[2\]: "auth_password_file": .*missing cannot be read \(ENOENT\)/);
});

test('--tls-ca-file must be a readable PEM file; --tls-policy takes the four policies', () => {
  const pem = join(dir, 'ca.pem');
  writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const c = good(['--tls-ca-file', pem, '--tls-policy', 'verify', '--mta-sts', 'off', '--mta-sts-port', '8443']);
  assert.deepEqual(c.outboundTls, { policy: 'verify', caFile: pem, mtaSts: 'off', mtaStsPort: 8443, mtaStsTimeout: 10_000, mtaStsMaxSize: 65_536 });
  assert.match(bad(['--tls-ca-file', join(dir, 'nope.pem')]).join('\n'), /--tls-ca-file: .*nope\.pem cannot be read \(ENOENT\)/);
  assert.match(bad(['--tls-ca-file', file('not a certificate')]).join('\n'), /--tls-ca-file: .* holds no PEM certificate/);
  assert.match(bad(['--tls-policy', 'dane']).join('\n'), /--tls-policy/);
});
