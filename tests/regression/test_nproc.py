"""Several processes through the one command: `./reproduce.sh --nproc 2` on the CPU trains Task 2 under
torchrun (two gloo processes, DistributedDataParallel), with a stage stamp like any other stage, then
predicts, packages and verifies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_args import run_pipeline  # noqa: E402

pytestmark = pytest.mark.slow
NPROC_ARGS = ["--scale", "tiny", "--track", "2", "--device", "cpu", "--seed", "0", "--epochs", "2", "--nproc", "2"]


def test_nproc_2_trains_under_torchrun_and_the_package_verifies(tmp_path):
    out = tmp_path / "run"
    result, stdout = run_pipeline(out, via_script=True, with_stdout=True, base=NPROC_ARGS)
    for stage in ("synth", "validate", "train", "predict", "package", "verify"):
        assert result["status"][stage] == "done", result["status"]
    assert f"submission (verified): {out / 'submission'}" in stdout
    run = json.loads((out / "task2" / "run.json").read_text())
    assert run["world_size"] == 2
    stamp = json.loads((out / "stamps" / "train.json").read_text())
    assert "torch.distributed.run" in json.dumps(stamp) and "--nproc_per_node" in json.dumps(stamp)
    again = run_pipeline(out, base=NPROC_ARGS)  # the stamp holds: nothing trains twice
    assert again["status"]["train"].startswith("skipped"), again["status"]
