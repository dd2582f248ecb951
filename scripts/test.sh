#!/usr/bin/env bash
# Set up, then lint and run every test. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# The web page is tested in a real browser: Debian's chromium, driven by Playwright. Install it where
# we may (root, or password-less sudo); elsewhere that one test says it is skipped and why.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo="no"; fi
  if [ "$sudo" != no ]; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } \
      >/dev/null 2>&1 || echo "note: could not install chromium; the browser test will be skipped"
  fi
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/pytest "$@"
