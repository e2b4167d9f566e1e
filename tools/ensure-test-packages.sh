#!/usr/bin/env bash
# System programs the tests drive: Debian's Chromium (browser tests through Playwright,
# executable_path=/usr/bin/chromium; Playwright's own browser download cannot work offline),
# nginx (the compose.yaml proxy in front of two gateway processes) and PgBouncer (a pooler the
# PostgreSQL store must refuse in transaction mode). Installed when missing and
# we can (root with apt-get); otherwise a clear message. PostgreSQL's server binaries are
# optional locally (the suite says when it ran on SQLite only); .ci/run installs them.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian's ${missing[*]} for the tests..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts the packages' own services; the tests start their own on loopback ports.
  for service in nginx pgbouncer; do
    command -v service >/dev/null && service "$service" stop >/dev/null 2>&1 || true
  done
  exit 0
fi
echo "error: the tests need Debian's ${missing[*]}; install them (sudo apt-get install ${missing[*]})" >&2
exit 1
