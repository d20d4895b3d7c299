#!/usr/bin/env bash
# CI's PostgreSQL: installs Debian's `postgresql` when no server binaries are found. The tests
# (tests/e2e/test_postgres.py) start their own server from them with scripts/local_postgres.py:
# initdb into a temporary folder as the unprivileged `postgres` user, 127.0.0.1 on a free port,
# stopped at the end. TWINS_NAS_REQUIRE_POSTGRES=1 makes those tests fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  # Debian starts a cluster of its own on install; the tests do not use it
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    for v in /usr/lib/postgresql/*; do pg_ctlcluster "$(basename "$v")" main stop 2>/dev/null || true; done
  fi
fi
