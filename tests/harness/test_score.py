"""`harness score`: the competition's three AUCs, 0.0 for a column the prediction lacks."""

from __future__ import annotations

import json

import polars as pl

from core.metrics import auc


def test_scores_oracle_and_missing_columns(tiny_data, tmp_path, harness_cli):
    truth = tiny_data / "oracle" / "ground_truth.csv"
    proba = pl.read_parquet(tiny_data / "oracle" / "proba_test.parquet")
    pred = tmp_path / "prediction.csv"
    proba.rename({"proba": "Task2"}).write_csv(pred)
    code, out, err = harness_cli("score", pred, "--truth", truth, "--json")
    doc = json.loads(out)
    expected = json.loads((tiny_data / "oracle" / "oracle.json").read_text())["auc"]["test"]["oracle"]
    assert code == 0 and abs(doc["scores"]["AUC_Task2"] - expected) < 1e-12
    assert doc["scores"]["AUC_Task1"] == 0.0 and doc["scores"]["AUC_Task1&2"] == 0.0
    code, out, err = harness_cli("score", pred, "--truth", truth)
    assert out.splitlines()[1].startswith("AUC_Task2: 0.9")


def test_invalid_prediction_scores_nothing(tiny_data, tmp_path, harness_cli):
    truth = tiny_data / "oracle" / "ground_truth.csv"
    pred = tmp_path / "prediction.csv"
    pl.DataFrame({"ID": [0, 1], "Task2": [0.1, 0.2]}).write_csv(pred)
    code, out, err = harness_cli("score", pred, "--truth", truth, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["scores"]["AUC_Task2"] == 0.0
    assert [f["id"] for f in doc["findings"]] == ["prediction.row_count"]


def test_auc_matches_pairwise_definition():
    labels = [0, 1, 0, 1, 1, 0]
    scores = [0.1, 0.9, 0.9, 0.3, 0.8, 0.2]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    pairs = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert abs(auc(labels, scores) - pairs) < 1e-12
