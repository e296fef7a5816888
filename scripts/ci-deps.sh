#!/usr/bin/env bash
# CI dependencies of the interop and browser tests, from Debian's packages: postfix (a private
# instance is the next hop in test/interop/delivery.test.ts and the client in postfix-relay.test.ts),
# python3-aiosmtpd (the sink in test/interop/delivery.test.ts, run with /usr/bin/python3), swaks
# (a submitter in test/interop/clients.test.ts; with libnet-ssleay-perl and libio-socket-ssl-perl it
# speaks TLS in test/interop/tls-auth-clients.test.ts), and chromium (the browser that
# test/web/web-page.test.ts drives through playwright-core, at /usr/bin/chromium; Playwright never
# downloads a browser of its own).
# Idempotent: when all are present it does nothing (no apt-get update). It never starts, enables
# or configures the system's own Postfix: the "No configuration" debconf answer leaves
# /etc/postfix without a main.cf, and a policy-rc.d that denies every service start is in place
# for the length of the install (removed afterwards, unless one was already there).
# Needs root (or sudo) only when something is missing. Exits non-zero if an install fails.
set -euo pipefail

missing=()
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || missing+=(postfix)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
command -v swaks >/dev/null 2>&1 || [ -x /usr/bin/swaks ] || missing+=(swaks)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# openssl: test/support/test-ca.ts makes the TLS tests' CA and certificates with it
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# swaks' --tls/--tlsc (test/interop/tls-auth-clients.test.ts) need Perl's TLS modules
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 >/dev/null 2>&1 || missing+=(libio-socket-ssl-perl)

if [ ${#missing[@]} -eq 0 ]; then
  echo "ci-deps: postfix, python3-aiosmtpd, swaks (with TLS), chromium and openssl already installed"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "ci-deps: need root to install ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

echo "ci-deps: installing ${missing[*]}"
started=$(date +%s)

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# ci-deps.sh: no service starts during package installs\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

echo "postfix postfix/main_mailer_type select No configuration" | "${SUDO[@]}" debconf-set-selections
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

echo "ci-deps: done in $(( $(date +%s) - started )) s"
