#!/usr/bin/env bash
# Create .venv (once) and install movierec with its test tools into it.
# Sourced by run.sh and test.sh; safe to run again (pip skips what is already there).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
# torch first and pinned: the package itself asks for a range (torch>=2.2) that serves users
# anywhere, but an unpinned resolve here would pull a newer multi-GB CUDA build; 2.13.0 is the
# CPU build these machines carry.
.venv/bin/python -m pip install --quiet "torch==${MOVIEREC_TORCH:-2.13.0}" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install --quiet -e ".[test]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import movierec, torch" # fail loudly if the install did not take
# The verified MovieLens archives beside the project stand in for GroupLens on machines without
# internet; elsewhere movierec downloads from GroupLens.
if [ -z "${MOVIEREC_MIRROR:-}" ] && [ -d "$root/../shared/data/movielens" ]; then
  export MOVIEREC_MIRROR="$root/../shared/data/movielens"
fi
