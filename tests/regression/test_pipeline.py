"""The `tiny` pipeline end to end: recorded AUCs, bit-identical re-runs, resumption, failing stages.

Expected values live in tests/regression/expected.json; regenerate them deliberately with
`python tests/regression/record.py` and say why in the commit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from core.io import sha256_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_args import ARTIFACTS, PIPELINE_ARGS, ROOT, env, fingerprint, run_pipeline  # noqa: E402

pytestmark = pytest.mark.slow
EXPECTED = json.loads((Path(__file__).resolve().parent / "expected.json").read_text())
# On the machine that recorded expected.json (same fingerprint) the run must match it exactly. Elsewhere
# the floats of other CPU kernels may move the AUCs: a fresh clone on a second 2-core machine reproduced
# the demo AUCs to four decimals, and the smallest change the project acts on is 0.002 (a sweep's bar),
# so 0.002 lets any real change through no other machine's drift.
SAME_MACHINE = fingerprint() == EXPECTED["machine"]
TOLERANCE = 0.0 if SAME_MACHINE else 0.002


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("regression") / "run"
    result, stdout = run_pipeline(out, via_script=True, with_stdout=True)
    return out, result, stdout


def test_reproduce_sh_prints_the_table_and_verifies(first_run):
    out, result, stdout = first_run
    assert "Bayes-optimal oracle" in stdout and "item popularity" in stdout
    assert f"submission (verified): {out / 'submission'}" in stdout
    assert (out / "submission" / "MANIFEST.json").is_file()
    assert (out / "auc_vs_oracle.png").stat().st_size > 5_000
    for stage in ("synth", "validate", "embed", "train", "predict", "package", "verify"):
        assert result["status"][stage] == "done" and (out / "logs" / f"{stage}.log").is_file()


def test_auc_matches_the_recorded_values(first_run):
    _, result, _ = first_run
    assert result["auc"]["ours"]["valid"] == pytest.approx(EXPECTED["auc"]["valid"], abs=TOLERANCE)
    assert result["auc"]["ours"]["test"] == pytest.approx(EXPECTED["auc"]["test"], abs=TOLERANCE)
    assert result["auc"]["oracle"] == EXPECTED["oracle"]


def test_same_machine_gives_the_recorded_bytes(first_run):
    """On the recording machine the weights, item_info and predictions are the recorded bytes."""
    out, _, _ = first_run
    if not SAME_MACHINE:
        pytest.skip(f"not the machine that recorded expected.json ({fingerprint()['cpu']}); AUCs checked "
                    f"within {TOLERANCE}")
    assert {rel: sha256_file(out / rel) for rel in ARTIFACTS} == EXPECTED["sha256"]


def test_learns_beyond_popularity(first_run):
    """Three epochs on tiny data: above item popularity on both splits."""
    _, result, _ = first_run
    for split in ("valid", "test"):
        assert result["auc"]["ours"][split] > result["auc"]["popularity"][split] + 0.005, split


def test_same_seed_gives_identical_files_a_rerun_skips_every_stage_and_a_stale_one_runs_again(first_run, tmp_path):
    """A second run (its own folder: no test changes the module's run) gives the same bytes; running it
    again skips every stage and changes nothing; a stage whose stamp no longer matches runs again, and
    package replaces RUN_DIR/submission (one folder for the three: each full run costs a minute or more)."""
    out, _, _ = first_run
    second = tmp_path / "again"
    run_pipeline(second)
    before = {rel: sha256_file(second / rel) for rel in ARTIFACTS}
    assert before == {rel: sha256_file(out / rel) for rel in ARTIFACTS}
    result = run_pipeline(second)
    assert result["status"].pop("preflight").startswith("passed")
    assert all(s.startswith("skipped") for s in result["status"].values()), result["status"]
    assert {rel: sha256_file(second / rel) for rel in ARTIFACTS} == before
    (second / "stamps" / "package.json").unlink()
    (second / "submission" / "stale.txt").write_text("from an older package")
    result = run_pipeline(second)
    assert result["status"]["package"] == "done" and result["status"]["verify"] == "done"
    assert result["status"]["train"].startswith("skipped")
    assert not (second / "submission" / "stale.txt").exists()
    assert (second / "submission" / "MANIFEST.json").is_file()


def test_track3_package_rerun_full(first_run, tmp_path):
    """`verify --rerun full` on the Track 3 submission: Task 1 embed, Task 2 train and predict from the package,
    within the verifier's bounds of the recorded run (on the CPU with the same seed: the same AUC)."""
    from referee.verify import render, verify_package

    out, result, _ = first_run
    pkg = tmp_path / "submission"
    shutil.copytree(out / "submission", pkg)
    report = verify_package(pkg, data=out / "data", rerun="full")
    assert report.ok, render(report)
    full = report.rerun["full"]
    assert [s["name"] for s in full["steps"]] == ["task1", "task2", "predict"]
    assert full["valid_auc"] == pytest.approx(full["recorded_valid_auc"], abs=1e-9)
    assert full["spearman"] >= 0.999


def test_failing_stage_names_itself_and_keeps_earlier_outputs(first_run, tmp_path):
    out, _, _ = first_run
    data = tmp_path / "data"
    shutil.copytree(out / "data", data, ignore=shutil.ignore_patterns("oracle"))
    valid = data / "MicroLens_1M_x1" / "valid.parquet"
    # a value the footer cannot show (the preflight would refuse an unreadable file before any stage)
    frame = pl.read_parquet(valid)
    bad = pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(2, dtype=pl.Int64)).otherwise(pl.col("label"))
    frame.with_columns(bad.alias("label")).write_parquet(valid)
    run = tmp_path / "run"
    (run / "keep").mkdir(parents=True)
    (run / "keep" / "note.txt").write_text("earlier work")
    args = [a for a in PIPELINE_ARGS if a not in ("--scale", "tiny")] + ["--profile", "offline"]
    proc = subprocess.run([sys.executable, "-m", "harness.pipeline", *args, "--data", str(data), "--out", str(run)],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert last.startswith("error: stage validate failed") and str(run / "logs" / "validate.log") in last
    assert (run / "keep" / "note.txt").read_text() == "earlier work"
