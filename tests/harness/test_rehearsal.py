"""The real-data path rehearsed: `./reproduce.sh --data D` with real-architecture models, as a competitor runs it.

The models are transformers' CLIPModel and XLMRobertaModel built from small configs (tests/task1/
task1_testkit.py) and saved to folders the way `hf download --local-dir` does, without a model card, so
without a licence line. The dataset is the tiny generated one, shaped like the release (no oracle/),
with two defects a real download can have: one cover missing, and item_feature listing more than five
tags for some items (item_info keeps five, which Task 1 must copy, not recompute).

1. Without licences the preflight refuses within seconds, before any stage: nothing is written.
2. With `--image-model-license mit --text-model-license mit` the run goes through verify; the missing cover
   is a listed warning, and the packaged item_info keeps the dataset's tags.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "task1"))
from core.challenge import DATASET_DIR
from task1_testkit import build_tiny_clip, build_tiny_e5  # noqa: E402

pytestmark = pytest.mark.slow
MISSING_COVER = 5
MANY_TAGS = 30  # items 1..30 list six more tags in item_feature


def _env() -> dict:
    return dict(os.environ, PYTHONHASHSEED="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg",
                CUBLAS_WORKSPACE_CONFIG=":4096:8")


@pytest.fixture(scope="module")
def release(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    data = root / "MicroLens_1M_MMCTR"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("oracle"))
    path = data / "item_feature.parquet"
    feat = pl.read_parquet(path)
    more = pl.concat_list(pl.col("item_tags"), pl.lit([100, 101, 102, 103, 104, 105], dtype=pl.List(pl.Int64)))
    feat.with_columns(pl.when(pl.col("item_id") <= MANY_TAGS).then(more).otherwise(pl.col("item_tags"))
                      .alias("item_tags")).write_parquet(path)
    (data / "item_images" / f"{MISSING_COVER}.jpg").unlink()
    clip, e5 = build_tiny_clip(root / "clip-vit"), build_tiny_e5(root / "e5")
    assert not (clip / "README.md").exists() and not (e5 / "README.md").exists()
    return data, clip, e5


def _reproduce(data, clip, e5, out, *extra):
    cmd = ["bash", str(ROOT / "reproduce.sh"), "--data", str(data), "--out", str(out), "--image-model", str(clip),
           "--text-model", str(e5), "--device", "cpu", "--epochs", "1", *map(str, extra)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    return proc, time.perf_counter() - t0


def test_without_licences_the_preflight_refuses_in_seconds(release, tmp_path):
    data, clip, e5 = release
    out = tmp_path / "run"
    proc, seconds = _reproduce(data, clip, e5, out)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert seconds < 10, seconds
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2
    assert errors[0].startswith(f"error: [models] image model {clip}: licence unknown")
    assert "--image-model-license" in errors[0] and "--text-model-license" in errors[1]
    assert "no stage was started" in proc.stderr.splitlines()[-1]
    assert not out.exists()  # no stage output, no log, no stamp


def test_with_licences_the_run_goes_through_verify(release, tmp_path):
    data, clip, e5 = release
    out = tmp_path / "run"
    proc, seconds = _reproduce(data, clip, e5, out, "--image-model-license", "mit", "--text-model-license", "mit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"submission (verified): {out / 'submission'}" in proc.stdout
    result = json.loads((out / "results.json").read_text())
    assert all(result["status"][s] == "done" for s in ("validate", "embed", "train", "predict", "package", "verify"))
    assert result["preflight"]["known_data"]["official_release_by_row_counts"] is False
    assert any(f"{MISSING_COVER}.jpg" in w and "[data.image_missing]" in w for w in result["preflight"]["warnings"])

    # the missing cover: a warning in validate, replaced and listed by embed
    assert "[data.image_missing] warning" in (out / "logs" / "validate.log").read_text()
    task1 = json.loads((out / "task1" / "task1.json").read_text())
    assert task1["counts"]["missing_images"] == 1 and task1["counts"]["missing_image_ids"] == [MISSING_COVER]
    assert {m["license"] for m in task1["models"]} == {"MIT"}
    assert all(m["license_source"].startswith("stated") for m in task1["models"])

    # the dataset's tags, not the last five of item_feature's longer lists
    official = np.asarray(pl.read_parquet(data / DATASET_DIR / "item_info.parquet")["item_tags"].to_numpy())
    for path in (out / "task1" / "item_info.parquet", out / "submission" / "outputs" / "task1" / "item_info.parquet"):
        tags = np.asarray(pl.read_parquet(path)["item_tags"].to_numpy())
        np.testing.assert_array_equal(tags, official)
    assert (official[1:MANY_TAGS + 1] != [101, 102, 103, 104, 105]).any(axis=1).all()
    assert task1["item_tags"]["items_whose_item_feature_last_five_differ"] == MANY_TAGS
