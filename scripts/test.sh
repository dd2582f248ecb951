#!/usr/bin/env bash
# Set up, then lint and run every test. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# Real components from Debian's packages: the web page is tested in chromium (driven by Playwright),
# the service's store against a PostgreSQL server the tests start themselves. Install them where we
# may (root, or password-less sudo); elsewhere the tests that need them say they are skipped and why.
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
if [ -n "$missing" ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo="no"; fi
  if [ "$sudo" != no ]; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing; } \
      >/dev/null 2>&1 || echo "note: could not install$missing; the tests that need them will be skipped"
  fi
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/pytest "$@"
