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


ARTIFACTS = ["task1/item_info.parquet", "task2/model.safetensors", "prediction/prediction.csv",
             "prediction/prediction.zip"]


def fingerprint() -> dict:
    """What decides the exact floats of a CPU run: the CPU model, its vector flags and core count (torch's
    thread count), and the versions of Python and the numeric libraries. Same fingerprint, same bytes."""
    import hashlib
    import platform

    import numpy
    import torch

    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = " ".join(sorted(info.get("flags", "").split()))
    return {"cpu": info.get("model name") or platform.processor(), "cpus": os.cpu_count(),
            "cpu_flags_sha256": hashlib.sha256(flags.encode()).hexdigest(), "machine": platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


def env() -> dict:
    return dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                CUBLAS_WORKSPACE_CONFIG=":4096:8", MPLBACKEND="Agg")


def run_pipeline(out: Path, via_script: bool = False, extra: list[str] | None = None,
                 with_stdout: bool = False, base: list[str] | None = None):
    """Run the pipeline (`base` args, PIPELINE_ARGS by default) into `out`, through ./reproduce.sh when
    `via_script`; return results.json."""
    args = [*(base or PIPELINE_ARGS), "--out", str(out), *(extra or [])]
    cmd = ["bash", str(ROOT / "reproduce.sh"), *args] if via_script else [sys.executable, "-m", "harness.pipeline", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"pipeline failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads((out / "results.json").read_text())
    return (result, proc.stdout) if with_stdout else result
