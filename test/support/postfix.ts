/**
 * A private Postfix instance (Debian's package) as a next hop for interop tests: its own
 * config_directory, queue_directory, data_directory and log under one temp directory, one smtpd
 * listener on 127.0.0.1 and a free port, and every message for `PEER_DOMAIN` delivered by the
 * virtual(8) agent into one maildir (a file per message, no `>From ` escaping, unlike mbox).
 * Nothing else leaves it: local, relay and default transports are `error:`. The system's own
 * Postfix (/etc/postfix, /var/spool/postfix) is never read, started or touched.
 *
 * Postfix's master must start as root (its daemons drop to `mail_owner`), so `postfixUnavailable()`
 * gives a skip reason when the binary, the `postfix` user or root is missing. `stop()` stops the
 * instance and removes the temp directory; an exit hook stops it too if a test run dies first.
 *
 * Relay mode (`startPostfix({ relayTo })`): instead of a maildir, every message from loopback is
 * relayed by smtp(8) to that host and port (relayhost), as a smart-host relay would: the
 * Postfix → Postwire interop test and the benchmark's Postfix row use it. Postfix then adds only
 * its `Received:` header. Its defaults are kept where they matter for a fair comparison: the queue
 * file is fsynced before the 250, 20 deliveries per destination, connection caching on demand.
 *
 * What Postfix does to a message on the way into a maildir file (the tests undo exactly this):
 * CRLF line ends become LF (the UNIX form of every Postfix mailbox), and four header lines are
 * prepended: virtual(8)'s `Return-Path:`, `X-Original-To:`, `Delivered-To:`, and smtpd's `Received:`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The domain the instance accepts mail for. */
export const PEER_DOMAIN = 'postfix-peer.test';
/** Its myhostname, as it appears in the Received: header it adds. */
export const PEER_HOSTNAME = 'mx.postfix-peer.test';

const POSTFIX = '/usr/sbin/postfix';

export interface PostfixMessage {
  /** The maildir file name. */
  readonly file: string;
  /** The file exactly as Postfix wrote it. */
  readonly raw: Buffer;
  /** The envelope recipient, from Postfix's `Delivered-To:`. */
  readonly deliveredTo: string;
  /** The recipient as Postwire gave it in RCPT TO, from Postfix's `X-Original-To:`. */
  readonly originalTo: string;
  /** The envelope sender, from Postfix's `Return-Path:` (without the angle brackets). */
  readonly returnPath: string;
  /** Postfix's `Received:` header (folded lines included, LF line ends). */
  readonly received: string;
  /** Everything after the four headers Postfix prepended: the message as Postfix received it, in LF form. */
  readonly body: Buffer;
}

export interface PostfixPeer {
  readonly port: number;
  /** The instance's temp root: conf/, queue/, data/, mail/, log/. */
  readonly dir: string;
  /** The maildir every message lands in (files appear in its new/). */
  readonly maildir: string;
  /** The instance's log (postlogd's maillog_file), for failure messages. */
  log(): Promise<string>;
  /** The master daemon's pid (the root of the instance's process tree: CPU accounting). */
  masterPid(): Promise<number>;
  /** Every message delivered so far, oldest first. */
  messages(): Promise<PostfixMessage[]>;
  /** Resolves with the first `n` delivered messages, oldest first, or rejects after `ms`. */
  waitForMessages(n: number, ms?: number): Promise<PostfixMessage[]>;
  stop(): Promise<void>;
}

interface PostfixUser {
  readonly uid: number;
  readonly gid: number;
}

/** Why a private Postfix cannot run here, or undefined when it can. */
export function postfixUnavailable(binary = POSTFIX): string | undefined {
  if (!existsSync(binary)) return `${binary} not found (Debian's postfix package; scripts/ci-deps.sh installs it)`;
  if (process.getuid?.() !== 0) return 'a private Postfix instance needs root (its master starts as root and drops privileges)';
  if (postfixUser() === undefined) return 'no `postfix` user (created by the postfix package)';
  return undefined;
}

function postfixUser(): PostfixUser | undefined {
  const uid = spawnSync('id', ['-u', 'postfix'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postfix'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** A port that was free a moment ago: bound on 127.0.0.1:0, then closed (the caller retries on a race). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: readonly string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', (err) => resolve({ status: -1, output: String(err) }));
    child.on('close', (status) => resolve({ status, output }));
  });
}

export interface PostfixOptions {
  /** Relay mode: every message goes to this next hop (no maildir). */
  readonly relayTo?: { readonly host: string; readonly port: number };
  /**
   * smtpd's process limit (master.cf maxproc; Postfix's default is default_process_limit, 100).
   * Master also sizes the listen backlog by it, so a load of more concurrent clients than this
   * overflows the kernel's accept queue and leaves some of them half-open.
   */
  readonly smtpdProcessLimit?: number;
  /** Offer STARTTLS to clients with this certificate and key (PEM files; e.g. from test/support/test-ca). */
  readonly smtpdTls?: { readonly certFile: string; readonly keyFile: string };
}

/** main.cf: the settings both modes share, then the mode's own (maildir next hop, or relay). */
function mainCf(
  dir: string,
  mode: { readonly user: PostfixUser } | { readonly relayTo: NonNullable<PostfixOptions['relayTo']> },
  smtpdTls?: PostfixOptions['smtpdTls'],
): string {
  const serverTls = smtpdTls === undefined
    ? 'smtpd_tls_security_level = none\n'
    : `smtpd_tls_security_level = may\nsmtpd_tls_cert_file = ${smtpdTls.certFile}\nsmtpd_tls_key_file = ${smtpdTls.keyFile}\nsmtpd_tls_received_header = yes\n`;
  const own = 'relayTo' in mode
    ? `# A relay: everything from loopback goes to the smart host ${mode.relayTo.host}:${mode.relayTo.port}.
mydestination =
relay_domains =
relayhost = [${mode.relayTo.host}]:${mode.relayTo.port}
local_transport = error:5.1.1 no local delivery in this test instance
message_size_limit = 209715200
`
    : `# The test domain is a virtual mailbox domain (a domain may not be in both lists).
mydestination =
virtual_mailbox_domains = ${PEER_DOMAIN}
virtual_mailbox_base = ${dir}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:${mode.user.uid}
virtual_gid_maps = static:${mode.user.gid}
virtual_minimum_uid = ${mode.user.uid}
virtual_mailbox_limit = 0
# Nothing leaves this instance, whatever the recipient.
local_transport = error:5.1.1 no local delivery in this test instance
relay_transport = error:5.7.1 no relaying from this test instance
default_transport = error:5.7.1 no outbound mail from this test instance
relay_domains =
relayhost =
message_size_limit = 104857600
`;
  return `# Written by test/support/postfix.ts: a private instance on loopback.
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = ${PEER_HOSTNAME}
mydomain = ${PEER_DOMAIN}
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mynetworks_style = host
${own}alias_maps =
alias_database =
# Leave remote messages alone: no headers added or rewritten (Postfix 2.6+ semantics for remote
# clients; loopback would otherwise count as local through permit_inet_interfaces).
local_header_rewrite_clients =
remote_header_rewrite_domain =
# 127.0.0.1 without a DNS lookup; the Received: header says "localhost [127.0.0.1]" or "unknown".
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtputf8_enable = yes
biff = no
delay_warning_time = 0
notify_classes =
${serverTls}smtp_tls_security_level = none
maillog_file = ${dir}/log/maillog
maillog_file_prefixes = ${dir}/log
`;
}

function masterCf(port: number, smtpdProcessLimit?: number): string {
  // service type private unpriv chroot wakeup maxproc command
  return `# Written by test/support/postfix.ts: only the services a next hop (virtual delivery) or a relay (smtp) needs.
127.0.0.1:${port} inet n - n - ${smtpdProcessLimit ?? '-'} smtpd
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
tlsmgr    unix  - - n 1000? 1 tlsmgr
`;
}

/** Instances not yet stopped, stopped synchronously if the process exits first. */
const running = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const conf of running) spawnSync(POSTFIX, ['-c', conf, 'stop'], { stdio: 'ignore', timeout: 10_000 });
  });
}

/** Starts a private Postfix. Throws (with its log) when it cannot; call `postfixUnavailable()` first. */
export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixPeer> {
  const user = postfixUser();
  if (user === undefined) throw new Error('no postfix user');
  const dir = await mkdtemp(join(tmpdir(), 'postwire-postfix-'));
  const conf = join(dir, 'conf');
  const maildir = join(dir, 'mail', 'inbox');
  try {
    // The postfix user must traverse to queue/ and mail/; queue/ itself is root's (post-install
    // creates its subdirectories with their owners), mail/ is written by virtual as the postfix uid.
    await chmod(dir, 0o755);
    for (const sub of ['conf', 'queue', 'log']) await mkdir(join(dir, sub), { mode: 0o755 });
    await mkdir(join(dir, 'data'), { mode: 0o700 });
    await chown(join(dir, 'data'), user.uid, user.gid);
    await mkdir(join(dir, 'mail'), { mode: 0o700 });
    await chown(join(dir, 'mail'), user.uid, user.gid);
    await writeFile(join(conf, 'main.cf'), mainCf(dir, options.relayTo ? { relayTo: options.relayTo } : { user }, options.smtpdTls));

    let port = 0;
    let started = { status: null as number | null, output: '' };
    // A free port can be taken between our probe and Postfix's bind: one retry on a fresh port.
    for (let attempt = 0; attempt < 2; attempt++) {
      port = await freePort();
      await writeFile(join(conf, 'master.cf'), masterCf(port, options.smtpdProcessLimit));
      started = await run(POSTFIX, ['-c', conf, 'start']);
      if (started.status === 0) break;
    }
    if (started.status !== 0) {
      const log = await readFile(join(dir, 'log', 'maillog'), 'utf8').catch(() => '');
      throw new Error(`postfix -c ${conf} start failed (${started.status}):\n${started.output}\n${log}`);
    }
    running.add(conf);
    installExitHook();

    const log = (): Promise<string> => readFile(join(dir, 'log', 'maillog'), 'utf8').catch(() => '');
    const names = (): Promise<string[]> => readdir(join(maildir, 'new')).catch(() => [] as string[]);
    const messages = async (): Promise<PostfixMessage[]> => {
      const files = await Promise.all((await names()).map(async (file) => parseDelivered(file, await readFile(join(maildir, 'new', file)))));
      // Maildir names start with the delivery time in seconds, then a unique part with microseconds.
      return files.sort((a, b) => deliveryOrder(a.file) - deliveryOrder(b.file) || (a.file < b.file ? -1 : 1));
    };
    return {
      port,
      dir,
      maildir,
      log,
      masterPid: async () => Number((await readFile(join(dir, 'queue', 'pid', 'master.pid'), 'utf8')).trim()),
      messages,
      async waitForMessages(n, ms = 30_000) {
        const deadline = Date.now() + ms;
        for (;;) {
          const count = (await names()).length;
          if (count >= n) return (await messages()).slice(0, n);
          if (Date.now() > deadline) throw new Error(`Postfix delivered ${count} of ${n} messages within ${ms} ms; its log:\n${await log()}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
      async stop() {
        try {
          if (running.delete(conf)) {
            const stopped = await run(POSTFIX, ['-c', conf, 'stop']);
            if (stopped.status !== 0) throw new Error(`postfix -c ${conf} stop failed (${stopped.status}): ${stopped.output}`);
          }
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function deliveryOrder(file: string): number {
  const m = /^(\d+)\.(?:[^.]*?M(\d+))?/.exec(file);
  return m ? Number(m[1]) * 1e6 + Number(m[2] ?? 0) : 0;
}

/**
 * Splits a delivered file into the four headers Postfix prepends and the rest. Strict: each of
 * the four must be there, in virtual(8)'s order, and the Received: must be Postfix's own.
 */
export function parseDelivered(file: string, raw: Buffer): PostfixMessage {
  let at = 0;
  const header = (name: string): string => {
    const text = raw.toString('latin1', at, Math.min(raw.length, at + 64 * 1024));
    if (!text.startsWith(`${name}: `)) throw new Error(`${file}: expected Postfix's ${name}: at offset ${at}, found ${JSON.stringify(text.slice(0, 80))}`);
    let end = text.indexOf('\n');
    while (end >= 0 && (text[end + 1] === '\t' || text[end + 1] === ' ')) end = text.indexOf('\n', end + 1);
    if (end < 0) throw new Error(`${file}: unterminated ${name}: header`);
    at += end + 1;
    return text.slice(0, end);
  };
  const returnPath = header('Return-Path').slice('Return-Path: '.length);
  const originalTo = header('X-Original-To').slice('X-Original-To: '.length);
  const deliveredTo = header('Delivered-To').slice('Delivered-To: '.length);
  const received = header('Received');
  if (!received.includes(`by ${PEER_HOSTNAME} (Postfix)`)) throw new Error(`${file}: the first Received: is not Postfix's: ${received}`);
  return { file, raw, returnPath: returnPath.replace(/^<|>$/g, ''), originalTo, deliveredTo, received, body: raw.subarray(at) };
}
