"""bench/bench_peer.py reads the peer's log and edits only what a new dataset needs (the peer itself runs in
FuxiCTR's own venv, which CI does not build: `--dry-run` is the check a person runs; see the note in the
README's benchmarks table)."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_peer  # noqa: E402

LOG = """\
2026-12-06 10:00:00,000 P1 INFO Total number of parameters: 261310977.
2026-12-06 10:00:01,000 P1 INFO Start training: 1 batches/epoch
2026-12-06 10:00:02,000 P1 INFO Train loss: 0.693000
2026-12-06 10:00:02,000 P1 INFO Evaluation @epoch 1 - batch 1:
2026-12-06 10:00:03,000 P1 INFO [Metrics] AUC: 0.600000
2026-12-06 10:00:03,000 P1 INFO Save best model: monitor(max)=0.600000
2026-12-06 10:00:03,000 P1 INFO ************ Epoch=1 end ************
2026-12-06 10:00:04,000 P1 INFO Evaluation @epoch 2 - batch 1:
2026-12-06 10:00:05,000 P1 INFO [Metrics] AUC: 0.650000
2026-12-06 10:00:05,000 P1 INFO ********* Epoch=2 early stop *********
2026-12-06 10:00:06,000 P1 INFO ****** Validation evaluation ******
2026-12-06 10:00:07,000 P1 INFO [Metrics] AUC: 0.650000 - logloss: 0.500000
"""


def test_parse_log_reads_each_epochs_evaluation_and_the_final_one():
    parsed = bench_peer.parse_log(LOG)
    assert parsed["valid_by_epoch"] == [{"epoch": 1, "AUC": 0.6}, {"epoch": 2, "AUC": 0.65}]  # the early-stop epoch too
    assert parsed["final_valid"] == {"AUC": 0.65, "logloss": 0.5} and parsed["parameters"] == 261310977


def test_configure_changes_only_paths_vocabularies_workers_and_epochs(tmp_path, tiny_data):
    config = tmp_path / "peer" / bench_peer.CONFIG
    config.mkdir(parents=True)
    cols = [{"name": "item_id", "vocab_size": 91718}, {"name": "item_tags", "vocab_size": 11740},
            {"name": "likes_level", "vocab_size": 11}]
    (config / "dataset_config.yaml").write_text(yaml.safe_dump({bench_peer.DATASET_ID: {
        "feature_cols": cols, "train_data": "./data/x.parquet", "data_root": "./data/"}}))
    published = {"batch_size": 128, "learning_rate": 5e-4, "embedding_dim": 64, "transformer_layers": 2,
                 "dcn_cross_layers": 3, "dcn_hidden_units": [1024, 512, 256], "early_stop_patience": 5,
                 "epochs": 100, "num_workers": 3}
    (config / "model_config.yaml").write_text(yaml.safe_dump({bench_peer.EXPID: published}))
    out = bench_peer.configure(tmp_path / "peer", tiny_data, gpu=-1, epochs=2)
    ds = yaml.safe_load((config / "dataset_config.yaml").read_text())[bench_peer.DATASET_ID]
    model = yaml.safe_load((config / "model_config.yaml").read_text())[bench_peer.EXPID]
    info = pl.read_parquet(tiny_data / bench_peer.DATASET_ID / "item_info.parquet")
    assert [c["vocab_size"] for c in ds["feature_cols"]] == [info.height, int(info["item_tags"].explode().max()) + 1, 11]
    assert ds["train_data"] == str((tiny_data / bench_peer.DATASET_ID / "train.parquet").resolve())
    assert ds["data_root"] == "./data/"  # FuxiCTR's own working folder, inside the copy
    assert model == {**published, "epochs": 2, "num_workers": 0}
    assert out["changed"]["num_workers"] == 0 and out["published"]["batch_size"] == 128
