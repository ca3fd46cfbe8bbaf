"""The one definition of the regression pipeline, shared by the test and by record.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# tiny data, Track 3, offline encoders, CPU, a short training: about a minute on 2 cores
PIPELINE_ARGS = ["--scale", "tiny", "--track", "3", "--device", "cpu", "--seed", "0", "--epochs", "3"]


def env() -> dict:
    return dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                CUBLAS_WORKSPACE_CONFIG=":4096:8", MPLBACKEND="Agg")


def run_pipeline(out: Path, via_script: bool = False, extra: list[str] | None = None,
                 with_stdout: bool = False):
    """Run the pipeline into `out` (through ./reproduce.sh when `via_script`); return results.json."""
    args = [*PIPELINE_ARGS, "--out", str(out), *(extra or [])]
    cmd = ["bash", str(ROOT / "reproduce.sh"), *args] if via_script else [sys.executable, "-m", "harness.pipeline", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"pipeline failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads((out / "results.json").read_text())
    return (result, proc.stdout) if with_stdout else result
