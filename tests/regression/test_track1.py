"""Track 1 end to end: `./reproduce.sh --track 1` on tiny data (Task 1 embeddings, the baseline DIN with its
batch size and learning rate fitted to the data), and its package re-trained by `verify --rerun full`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_args import PIPELINE_ARGS, run_pipeline  # noqa: E402

pytestmark = pytest.mark.slow
_TRACK = PIPELINE_ARGS.index("--track") + 1
TRACK1_ARGS = [*PIPELINE_ARGS[:_TRACK], "1", *PIPELINE_ARGS[_TRACK + 1:]]  # the regression run, Track 1 instead of 3


@pytest.fixture(scope="module")
def track1_run(tmp_path_factory):
    """Read-only: a test that changes anything works on its own copy."""
    out = tmp_path_factory.mktemp("track1") / "run"
    result, stdout = run_pipeline(out, via_script=True, with_stdout=True, base=TRACK1_ARGS)
    return out, result, stdout


def test_track1_reproduce_sh_runs_every_stage_and_verifies(track1_run):
    out, result, stdout = track1_run
    for stage in ("synth", "validate", "embed", "train", "predict", "package", "verify"):
        assert result["status"][stage] == "done", result["status"]
    assert f"submission (verified): {out / 'submission'}" in stdout
    manifest = json.loads((out / "submission" / "MANIFEST.json").read_text())
    assert manifest["track"] == 1 and manifest["task2"]["model_class"] == "DIN"
    # the baseline's tunables fitted to 16,000 training rows, recorded in the run and carried into the package
    run = json.loads((out / "submission" / "outputs" / "task2" / "run.json").read_text())
    fitted = run["fitted_to_data"]
    assert (fitted["train_rows"], fitted["batch_size"], fitted["learning_rate"]) == (16000, 128, 0.000125)
    assert fitted["official"] == {"batch_size": 8192, "learning_rate": 0.001}
    assert run["model_class"] == "DIN" and run["stop_reason"]
    for split in ("valid", "test"):
        assert result["auc"]["ours"][split] > result["auc"]["popularity"][split] - 0.02, split


def test_track1_package_rerun_full(track1_run, tmp_path):
    """`verify --rerun full`: the verifier's own Track 1 steps (embed, the baseline DIN, predict) from the
    package give the recorded run again (the CPU and the same seed: the same AUC)."""
    from referee.verify import render, verify_package

    out, _, _ = track1_run
    pkg = tmp_path / "submission"
    shutil.copytree(out / "submission", pkg)
    report = verify_package(pkg, data=out / "data", rerun="full")
    assert report.ok, render(report)
    # the only notes: a dirty working tree (a test run), and the epoch cap this short run sets
    allowed = ("REPRO-RECORD: packaged from a dirty tree",
               "T1-TRACK1-BASELINE: training differs from the baseline's: epochs = 3 (baseline 100)")
    assert [f"{f.id}: {f.message}" for f in report.findings if not f"{f.id}: {f.message}".startswith(allowed)] == []
    full = report.rerun["full"]
    assert [s["name"] for s in full["steps"]] == ["task1", "task2", "predict"]
    assert full["valid_auc"] == pytest.approx(full["recorded_valid_auc"], abs=1e-9)
    assert full["spearman"] >= 0.999
