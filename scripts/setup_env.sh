#!/usr/bin/env bash
# Create or refresh the project's virtual environment from requirements.lock.
# Sourced by reproduce.sh and run_tests.sh; idempotent: it reinstalls only when the lock or
# pyproject.toml changed (a stamp in the venv records their hash).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMCTR_VENV:-$ROOT/.venv}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: no python3 found; install Python 3.10-3.12" >&2; exit 2; }
stamp_want="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.mmctr-stamp" 2>/dev/null || true)" != "$stamp_want" ]; then
  echo "setup: installing pinned dependencies (requirements.lock) into $VENV" >&2
  # torch==2.13.0 in the lock: the CPU wheel on a machine without CUDA, the CUDA wheel on a GPU host.
  if ! "$VENV/bin/python" -m pip install -c "$ROOT/requirements.lock" -e "$ROOT[test,offline]" \
      > "$VENV/setup.log" 2>&1; then
    echo "error: installing the dependencies failed; see $VENV/setup.log (last lines below)" >&2
    tail -n 5 "$VENV/setup.log" >&2
    exit 2
  fi
  echo "$stamp_want" > "$VENV/.mmctr-stamp"
fi
export PATH="$VENV/bin:$PATH"
