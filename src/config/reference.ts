/**
 * @module config/reference
 * docs/configuration.md, generated from SCHEMA: `npm run docs:config` writes it, and
 * config/docs.test.ts fails when the committed file differs from what this returns, so the
 * reference never drifts from the code. The prose between the tables lives here too, beside the
 * table it explains.
 *
 * Pure: SCHEMA in, Markdown out.
 */
import { formatValue } from './parse.js';
import { SCHEMA, type Section, type Setting } from './schema.js';

const TITLES: Readonly<Record<Section, string>> = {
  relay: 'The relay',
  'shared-queue': 'The shared queue (several nodes, one PostgreSQL)',
  'tls-auth': 'Inbound TLS and AUTH',
  limits: 'Limits',
  delivery: 'Delivery',
  'next-hop': 'Next hop and retries',
  'outbound-tls': 'Outbound TLS, MTA-STS',
  observability: 'Logs, metrics and the admin listener',
  unbuilt: 'Not available yet (refused, exit code 2)',
};

const INTRO = `# Configuration

<!-- Generated from src/config/schema.ts by \`npm run docs:config\`; do not edit by hand
     (a test fails when this file is stale). -->

Every setting has a flag, an environment variable and a config-file key, and a safe default.
Precedence, lowest first: **defaults ← \`POSTWIRE_*\` environment ← \`--config\` file ← flags**.
A later source replaces a value whole (lists are not merged). \`postwire check-config [flags]\`
prints the effective configuration; \`postwire help\` lists every flag with its default. A bad
value stops the start with exit code 2 and a message naming the setting, e.g.
\`postwire: --max-recipients: "abc" is not a whole number (expected 1..100000)\`.

- Flag: \`--max-recipients 100\`. Environment: \`POSTWIRE_MAX_RECIPIENTS=100\`.
  File: \`max-recipients = 100\`. Unknown keys and unknown \`POSTWIRE_*\` variables are errors
  (with a "did you mean" suggestion), so typos never pass silently.
- Durations: \`100ms\`, \`30s\`, \`5m\`, \`1h30m\`, \`5d\`. Sizes: octets, \`K/M/G\` (×1000) or
  \`KiB/MiB/GiB\` (×1024). Host and port: \`127.0.0.1:2525\`, \`[::1]:2525\`, \`name:25\`.

## The config file

\`--config FILE\` (or \`POSTWIRE_CONFIG\`) names a **TOML** file; keys are the flag names without
\`--\`. A file whose name ends in \`.json\` is read as JSON instead (the format before TOML, still
accepted; the same keys, routes as a \`"routes"\` list). Any other extension is refused, so a file is
never parsed by guesswork.

\`\`\`toml
# /etc/postwire/postwire.toml
listen = ["0.0.0.0:25", "[::]:25"]
hostname = "mx1.example.com"
spool = "/var/spool/postwire"
relay-from = ["10.0.0.0/8", "127.0.0.0/8"]
max-message-size = "25MiB"
max-recipients = 500
retry = "1m,10m,1h"

[[route]]
pattern = "example.com"
smarthost = "relay.example.net:587"
concurrency = 5
\`\`\`

Errors name the file, the line when it is known, the key and what is wrong:
\`postwire: relay.toml:7: key "max-recipents" is unknown (did you mean "max-recipients"?)\`.

## Reloading (SIGHUP)

\`kill -HUP <pid>\` (systemd: \`systemctl reload postwire\`) reads the configuration again, from the
same flags, environment and file. Settings marked **live** below take effect without dropping
anything: new SMTP sessions get the new limits while open sessions finish with the ones they
started with; routes and the retry policy apply to the next delivery attempt. A changed setting
marked **restart**
keeps its running value, and the log says \`config reloaded\` with the settings that need a restart
(\`restartNeeded\`). A file with errors changes nothing: every error is logged
(\`config reload refused\`) and the running configuration stays.
`;

const ROUTES = `## Routes (config file only)

Like a connector's address space: an ordered list of domain pattern → next hop, each with its
own concurrency, retry schedule and TLS policy. The most specific pattern wins: the exact domain,
then the longest \`*.suffix\` (subdomains at any depth, not the domain itself), then \`*\`. Without a
\`*\` route, everything else goes by MX. \`--smarthost\` is the shorthand for a \`*\` route. Routes
are reloaded live by SIGHUP.

\`\`\`toml
[[route]]
pattern = "example.com"
smarthost = "relay.example.net:587"
concurrency = 5

[[route]]
pattern = "*.example.org"
mx = true
retry = "30s,2m,10m"

[[route]]
pattern = "*"
smarthost = "127.0.0.1:2626"
\`\`\`

In a \`.json\` file the same list is \`"routes": [{ "pattern": "example.com", "smarthost": … }, …]\`.

| field | meaning |
|---|---|
| \`pattern\` | \`example.com\`, \`*.example.com\` or \`*\` |
| \`smarthost\` / \`mx\` | the next hop: \`"HOST:PORT"\`, or \`true\` for MX lookup |
| \`concurrency\` | simultaneous deliveries to this next hop (default \`--destination-concurrency\`) |
| \`retry\` | this route's retry delays, replacing \`--retry\` for its recipients |
| \`tls\` | \`none\`, \`may\`, \`encrypt\` or \`verify\` for this route, replacing \`--tls-policy\` ([security.md](security.md#outbound-tls)) |
| \`auth_user\`, \`auth_password_file\` | client AUTH (PLAIN or LOGIN) to this route's smart host, only ever over TLS; the file holds the password (read at each connection, never printed) |

\`postwire check-config --config FILE\` prints the routes it read.
`;

const DKIM = `## DKIM signing keys (config file only)

One \`[[dkim]]\` table per key (in a \`.json\` file, a \`"dkim"\` list). Mail whose \`From:\` domain has a key
is signed once, when it is queued, so every retry sends the same signed bytes; mail from other
domains is sent unsigned. How to make keys and what to publish in DNS:
[security.md](security.md#dkim-signing). Keys are reloaded live by SIGHUP (a key rotation needs no
restart); a reload whose keys do not all load changes nothing.

\`\`\`toml
[[dkim]]
domain = "example.com"
selector = "rsa2026"
key-file = "/etc/postwire/dkim/example.com-rsa.pem"

[[dkim]]                      # a second key for the same domain: both sign (RSA + Ed25519)
domain = "example.com"
selector = "ed2026"
key-file = "/etc/postwire/dkim/example.com-ed25519.pem"
subdomains = true
\`\`\`

| field | meaning |
|---|---|
| \`domain\` | the signing domain (\`d=\`); mail is signed when its \`From:\` domain is this domain |
| \`selector\` | \`s=\`: the public key is published at \`<selector>._domainkey.<domain>\` |
| \`key-file\` | the private key, PEM (PKCS#8, or PKCS#1 for RSA), unencrypted; read and checked at start and on SIGHUP. Relative paths resolve against the working directory |
| \`algorithm\` | optional: \`rsa-sha256\` or \`ed25519-sha256\`; the key decides, and a value that does not match the key is an error |
| \`headers\` | optional: the header fields to sign (\`h=\`); must include \`From\`. Default: From, Reply-To, Subject, Date, Message-ID, To, Cc, MIME-Version, Content-Type, Content-Transfer-Encoding, Content-ID, Content-Description, In-Reply-To, References, Sender and the List-* fields (each signed where present) |
| \`canonicalization\` | optional: \`relaxed/relaxed\` (default), \`relaxed/simple\`, \`simple/relaxed\` or \`simple/simple\` |
| \`subdomains\` | optional, default \`false\`: also sign mail from any subdomain of \`domain\` that has no key of its own (\`d=\` is then this domain: DMARC relaxed alignment accepts it, strict alignment does not) |

A missing, unreadable, encrypted or invalid key file, a key type with no DKIM algorithm (EC, DSA),
an RSA key under 1024 bits, a mismatched \`algorithm\` or a repeated domain + selector stops the start
with exit code 2, e.g. \`postwire: /etc/postwire/postwire.toml:12: dkim[1]: "key-file"
"/etc/postwire/dkim/ed.pem": cannot read the key: no such file\`. An RSA key under 2048 bits is
accepted with a warning in the log and in \`check-config\`, which lists every key (domain,
selector, file, algorithm, size) and never the key itself.
`;

const NOTES: Partial<Record<Section, string>> = {
  limits:
    'The abuse limits (`--limits-exempt`, the `*-rate` settings, `--rate-window`, the tarpit) are explained in ' +
    '[security.md](security.md#abuse-limits): who is counted (per address, IPv6 per /64, or per AUTH user), the ' +
    '`451 4.7.1` and `421 4.7.0` replies, and what a rate of 0 means. Loopback is exempt by default.\n',
  'shared-queue':
    'Without `--queue`, each node keeps its own embedded queue in `--spool`. With `--queue ' +
    'postgres://user[:password]@host[:port]/database`, every node given the same URL and schema accepts into and delivers ' +
    'from one queue ([queue.md](queue.md#the-shared-postgresql-queue)). Create or upgrade the schema first with ' +
    '`postwire migrate --queue URL [--queue-schema NAME]`; `serve` refuses a missing or older schema. A node\'s database ' +
    'connections are named `postwire:NAME` (`application_name`) after `--node-name`, which is also the lease owner tools show.\n',
  'tls-auth':
    'With `--tls-cert` and `--tls-key`, every `--listen` listener offers STARTTLS (TLS 1.2 or later) and `--submission` ' +
    'listens with implicit TLS. With `--users`, AUTH PLAIN and LOGIN are offered once the session is TLS (a client ' +
    'that tries before gets `538 5.7.11`); an authenticated client may relay from any address. SIGHUP re-reads the ' +
    'certificate, the key and the user file; a file that fails to load keeps the running one and is logged. ' +
    'See [security.md](security.md).\n',
  observability: [
    '`--admin` serves the admin API under `/api/v1` ([admin-api.md](admin-api.md)) and `GET /metrics`',
    '([metrics.md](metrics.md)); the log is described in the README. With `--admin-token` (or',
    '`POSTWIRE_ADMIN_TOKEN`) every `/api/v1` request must carry `Authorization: Bearer TOKEN` (401',
    '`UNAUTHORIZED` otherwise). An `--admin` address that is not loopback (`127.0.0.0/8`, `::1`,',
    '`localhost`) without a token is a configuration error (exit 2): the API can delete and bounce',
    'mail. `postwire queue` and `postwire explain` send the same token from `--admin-token` or',
    '`POSTWIRE_ADMIN_TOKEN`; `check-config` prints it as `(set, not shown)`.',
    '',
  ].join('\n'),
  'outbound-tls':
    'Each route may set its own `tls`; MTA-STS `enforce` and REQUIRETLS raise a host to `verify`, never lower it. ' +
    'A policy that requires TLS never falls back to plain text: the attempt is deferred with a 4.7.x reason in the ' +
    'history. See [security.md](security.md#outbound-tls).\n',
  unbuilt: 'Each is refused with `… is not available in this version yet` rather than ignored.\n',
};

export function configurationReference(): string {
  const parts = [INTRO];
  for (const section of Object.keys(TITLES) as Section[]) {
    const settings = SCHEMA.filter((s) => s.section === section);
    if (settings.length === 0) continue;
    parts.push(`## ${TITLES[section]}\n\n| flag | default | reload | meaning |\n|---|---|---|---|\n${settings.map(row).join('\n')}\n`);
    const note = NOTES[section];
    if (note !== undefined) parts.push(note);
    if (section === 'next-hop') parts.push(ROUTES);
    if (section === 'limits') parts.push(DKIM);
  }
  return parts.join('\n');
}

function row(s: Setting): string {
  const head = `\`${s.flag} ${s.metavar.replaceAll('|', '\\|')}\``;
  const reload = s.unavailable !== undefined ? '' : s.reload;
  const doc = s.doc.replaceAll('|', '\\|') + (s.repeatable ? ' (repeatable)' : '') + (s.unavailable !== undefined ? ` (${s.unavailable})` : '');
  return `| ${head} | ${defaultText(s)} | ${reload} | ${doc} |`;
}

function defaultText(s: Setting): string {
  if (s.kind === 'hostname') return 'the system host name';
  if (s.default === undefined) return 'none';
  return `\`${formatValue(s, s.default).replaceAll('|', '\\|')}\``;
}
