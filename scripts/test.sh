#!/usr/bin/env bash
# Set up, then lint and run every test. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
.venv/bin/ruff check src tests benchmarks
.venv/bin/pytest "$@"
