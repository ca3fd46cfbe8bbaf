"""The generated dataset: the official layout and types, exact posterior, same seed -> same bytes."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from core.challenge import DATASET_DIR
from core.io import sha256_file
from harness.synth import SCALES, generate, history_lengths
from core.validate import validate_root



def _hashes(root):
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_types(tiny_data):
    cfg = SCALES["tiny"]
    for rel in (f"{DATASET_DIR}/train.parquet", f"{DATASET_DIR}/valid.parquet", f"{DATASET_DIR}/test.parquet", f"{DATASET_DIR}/item_info.parquet",
                "item_feature.parquet", "item_emb.parquet", "item_seq.parquet", "oracle/oracle.json",
                "oracle/ground_truth.csv"):
        assert (tiny_data / rel).is_file(), rel
    assert len(list((tiny_data / "item_images").glob("*.jpg"))) == cfg.n_items
    train = pl.read_parquet(tiny_data / DATASET_DIR / "train.parquet")
    assert train.schema == pl.Schema({"user_id": pl.Int64, "item_seq": pl.Array(pl.Int64, 64),
                                      "item_id": pl.Int64, "likes_level": pl.Int64, "views_level": pl.Int64,
                                      "label": pl.Int64})
    assert train.height == cfg.n_train and train["label"].sum() == cfg.n_train // 4
    test = pl.read_parquet(tiny_data / DATASET_DIR / "test.parquet")
    assert test.columns[0] == "ID" and test["ID"].to_list() == list(range(cfg.n_test))
    info = pl.read_parquet(tiny_data / DATASET_DIR / "item_info.parquet")
    assert info.schema["item_emb_d128"] == pl.Array(pl.Float64, 128)
    assert info.height == cfg.n_items + 1
    feat = pl.read_parquet(tiny_data / "item_feature.parquet")
    assert feat.schema["item_tags"] == pl.List(pl.Int64) and feat.schema["item_title"] == pl.String
    report = validate_root(tiny_data, require_all=True)
    assert report.ok, report.findings


def test_users_are_disjoint_and_histories_match_item_seq(tiny_data):
    frames = {s: pl.read_parquet(tiny_data / DATASET_DIR / f"{s}.parquet") for s in ("train", "valid", "test")}
    users = {s: set(f["user_id"].unique().to_list()) for s, f in frames.items()}
    assert not users["train"] & users["valid"] and not users["train"] & users["test"]
    seq = pl.read_parquet(tiny_data / "item_seq.parquet")
    full = dict(zip(seq["user_id"].to_list(), seq["item_seq"].to_list()))
    row = frames["valid"].row(0, named=True)
    hist = [i for i in row["item_seq"] if i]
    assert hist == full[row["user_id"]][-64:]


def test_cold_items_never_in_train(tiny_data):
    doc = json.loads((tiny_data / "oracle" / "oracle.json").read_text())
    train = pl.read_parquet(tiny_data / DATASET_DIR / "train.parquet")
    seen = set(train["item_id"].to_list()) | set(train["item_seq"].arr.explode().to_list())
    test = pl.read_parquet(tiny_data / DATASET_DIR / "test.parquet")
    unseen = set(test["item_id"].to_list()) - seen
    assert doc["cold_items"] > 0 and len(unseen) > 0


def test_oracle_beats_naive_scorers(tiny_data):
    doc = json.loads((tiny_data / "oracle" / "oracle.json").read_text())
    for split in ("valid", "test"):
        a = doc["auc"][split]
        assert a["oracle"] > a["oracle_item_only"] > a["popularity"] > a["random"] - 0.05
        assert 0.4 < a["random"] < 0.6
    # the oracle's probabilities are calibrated: their mean matches the share of positives
    p = pl.read_parquet(tiny_data / "oracle" / "proba_test.parquet")["proba"].to_numpy()
    gt = pl.read_csv(tiny_data / "oracle" / "ground_truth.csv")["label"].to_numpy()
    assert abs(p.mean() - gt.mean()) < 0.03


def test_history_length_shape():
    lengths = history_lengths(200_000, np.random.default_rng(0))
    assert lengths.min() == 3 and lengths.max() <= 100
    assert np.median(lengths) == pytest.approx(6, abs=1)
    assert 6.5 < lengths.mean() < 9.5


def test_same_seed_same_bytes_other_seed_differs(tiny_data, tmp_path):
    again = tmp_path / "again"
    generate(again, scale="tiny", seed=0)
    assert _hashes(again) == _hashes(tiny_data)
    other = tmp_path / "other"
    generate(other, scale="tiny", seed=1)
    assert _hashes(other)[f"{DATASET_DIR}/train.parquet"] != _hashes(tiny_data)[f"{DATASET_DIR}/train.parquet"]


def test_refuses_to_overwrite(tiny_copy, harness_cli):
    before = sha256_file(tiny_copy / DATASET_DIR / "train.parquet")
    code, out, err = harness_cli("synth", tiny_copy, "--scale", "tiny")
    assert code == 2 and "not empty" in err and "--overwrite" in err and err.count("\n") == 1
    assert sha256_file(tiny_copy / DATASET_DIR / "train.parquet") == before
