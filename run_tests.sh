#!/usr/bin/env bash
# The test command README.md gives: sets up .venv from requirements.lock, then runs the whole suite
# offline (no model hub) with a fixed hash seed. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")" && pwd)"
source "$ROOT/scripts/setup_env.sh"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0 MPLBACKEND=Agg
cd "$ROOT"
exec python -m pytest -n 2 "$@"
