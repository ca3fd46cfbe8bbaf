"""`harness validate` and the schemas: every class of bad input names the file, the check and the rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from core.challenge import DATASET_DIR
from core.schemas import validate_frame, validate_item_info, validate_prediction



def _rewrite(path, fn):
    frame = fn(pl.read_parquet(path))
    frame.write_parquet(path)


def _set_row(frame, column, row, value):
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(value).otherwise(pl.col(column)).alias(column))


def test_clean_root_passes(tiny_data, harness_cli):
    code, out, err = harness_cli("validate", tiny_data)
    assert code == 0, out
    assert "valid: 8 checked, 0 absent, 0 error(s)" in out


def test_json_only_on_stdout(tiny_data, harness_cli):
    code, out, err = harness_cli("validate", tiny_data, "--json")
    doc = json.loads(out)
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["findings"] == []
    assert "validated in" in err


@pytest.mark.parametrize("case,fid,needle", [
    ("wrong_dtype", "schema.wrong_datatype", "column label: dtype Int32, expected Int64"),
    ("missing_column", "schema.column_not_in_dataframe", "missing column likes_level"),
    ("item_out_of_range", "data.item_id_range", "row 7: 100000"),
    ("history_gap", "data.item_seq_left_padded", "left-padded"),
])
def test_bad_train_file(tiny_copy, harness_cli, case, fid, needle):
    path = tiny_copy / DATASET_DIR / "train.parquet"
    if case == "wrong_dtype":
        _rewrite(path, lambda f: f.with_columns(pl.col("label").cast(pl.Int32)))
    elif case == "missing_column":
        _rewrite(path, lambda f: f.drop("likes_level"))
    elif case == "item_out_of_range":
        _rewrite(path, lambda f: _set_row(f, "item_id", 7, 100_000))
    elif case == "history_gap":
        seq = pl.read_parquet(path)["item_seq"].to_numpy().copy()
        seq[3, 60] = 0
        seq[3, 59] = 5
        _rewrite(path, lambda f: f.with_columns(pl.Series("item_seq", seq)))
    code, out, err = harness_cli("validate", tiny_copy, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1 and not doc["ok"]
    hits = [f for f in doc["findings"] if f["id"] == fid]
    assert hits and needle in hits[0]["message"] and hits[0]["path"].endswith("train.parquet")
    code, out, err = harness_cli("validate", tiny_copy)
    assert "FAIL  MicroLens_1M_x1/train.parquet" in out and f"[{fid}]" in out


def test_row0_content_in_item_info(tiny_copy, harness_cli):
    path = tiny_copy / DATASET_DIR / "item_info.parquet"
    emb = pl.read_parquet(path)["item_emb_d128"].to_numpy().copy()
    emb[0, 5] = 0.5
    _rewrite(path, lambda f: f.with_columns(pl.Series("item_emb_d128", emb)))
    code, out, err = harness_cli("validate", path)
    assert code == 1 and "[data.row0_zero]" in out and "row 0" in out


@pytest.mark.parametrize("mutate,fid", [
    (lambda f: _set_row(f, "ID", 5, 4), "data.ID_positional"),  # duplicate ID 4
    (lambda f: f.filter(pl.col("ID") != 3), "data.ID_positional"),  # missing ID 3
])
def test_test_ids(tiny_copy, harness_cli, mutate, fid):
    path = tiny_copy / DATASET_DIR / "test.parquet"
    _rewrite(path, mutate)
    code, out, err = harness_cli("validate", path, "--json")
    assert code == 1 and fid in [f["id"] for f in json.loads(out)["findings"]]


def test_a_missing_cover_is_a_listed_warning_and_strict_makes_it_an_error(tiny_copy, harness_cli):
    (tiny_copy / "item_images" / "17.jpg").unlink()
    code, out, err = harness_cli("validate", tiny_copy)
    assert code == 0 and "[data.image_missing] warning" in out and "17.jpg" in out and "1 of 400" in out
    code, out, err = harness_cli("validate", tiny_copy, "--strict")
    assert code == 1 and "[data.image_missing] error" in out and "17.jpg" in out


def test_covers_beyond_the_maximum_share_are_an_error(tiny_copy, harness_cli):
    """400 items: 4 bad covers are 1 % (allowed), 5 are 1.25 % (the run stops)."""
    images = tiny_copy / "item_images"
    for i in (3, 4, 5):
        (images / f"{i}.jpg").unlink()
    (images / "6.jpg").write_bytes(b"")  # empty
    code, out, err = harness_cli("validate", tiny_copy, "--json")
    found = {f["id"]: f for f in json.loads(out)["findings"]}
    assert code == 0 and found["data.image_unreadable"]["severity"] == "warning"
    (images / "7.jpg").write_bytes(b"<html>not an image</html>")  # not an image format
    code, out, err = harness_cli("validate", tiny_copy, "--json")
    found = {f["id"]: f for f in json.loads(out)["findings"]}
    assert code == 1 and found["data.image_missing"]["severity"] == "error"
    assert "5 of 400 covers are missing or unreadable (1.2%)" in found["data.image_missing"]["message"]
    assert "6.jpg, 7.jpg" in found["data.image_unreadable"]["message"]


def test_unreadable_parquet(tiny_copy, harness_cli):
    (tiny_copy / DATASET_DIR / "valid.parquet").write_bytes(b"PAR1 this is not parquet")
    code, out, err = harness_cli("validate", tiny_copy)
    assert code == 1 and "[io.unreadable]" in out and "valid.parquet" in out
    assert "Traceback" not in out + err


def test_path_that_does_not_exist(tmp_path, harness_cli):
    code, out, err = harness_cli("validate", tmp_path / "nope")
    assert code == 2 and out == "" and err.startswith("error: ") and "nope" in err
    code, out, err = harness_cli("validate", tmp_path / "nope.parquet")
    assert code == 2 and "no such file" in err


def test_absent_files_are_listed(tiny_copy, harness_cli):
    (tiny_copy / "item_emb.parquet").unlink()
    code, out, err = harness_cli("validate", tiny_copy)
    assert code == 0 and "1 absent" in out and "item_emb.parquet" in out


def test_require_all_requires_what_the_stages_read(tiny_copy, harness_cli):
    (tiny_copy / "item_emb.parquet").unlink()
    (tiny_copy / "item_seq.parquet").unlink()
    code, out, err = harness_cli("validate", tiny_copy, "--require-all")
    assert code == 0 and "no pipeline stage reads it" in out  # no stage reads either file
    (tiny_copy / "item_feature.parquet").unlink()
    code, out, err = harness_cli("validate", tiny_copy, "--require-all")
    assert code == 1 and "item_feature.parquet" in out and "stages for track 3 read it" in out
    code, out, err = harness_cli("validate", tiny_copy, "--require-all", "--track", "2")
    assert code == 0  # Track 2 embeds nothing: item_feature is not read
    (tiny_copy / DATASET_DIR / "item_info.parquet").unlink()
    code, out, err = harness_cli("validate", tiny_copy, "--require-all", "--track", "2")
    assert code == 1 and "item_info.parquet" in out


def _prediction(n, columns=("Task2",), seed=0):
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"ID": np.arange(n, dtype=np.int64), **{c: rng.random(n) for c in columns}})


@pytest.mark.parametrize("columns", [("Task1",), ("Task2",), ("Task1", "Task2", "Task1&2")])
def test_competition_sized_predictions_pass(tmp_path, harness_cli, columns):
    path = tmp_path / "prediction.csv"
    _prediction(379_142, columns).write_csv(path)
    assert path.read_text().splitlines()[0] == ",".join(("ID",) + columns)
    code, out, err = harness_cli("validate", path)
    assert code == 0, out


def test_prediction_scores_nan_and_out_of_range(tmp_path, harness_cli):
    frame = _prediction(50).with_columns(
        pl.when(pl.col("ID") == 3).then(float("nan")).when(pl.col("ID") == 9).then(1.5)
        .otherwise(pl.col("Task2")).alias("Task2"))
    path = tmp_path / "prediction.csv"
    frame.write_csv(path)
    code, out, err = harness_cli("validate", path, "--json")
    found = [f for f in json.loads(out)["findings"] if f["id"] == "data.Task2_score"]
    assert code == 1 and found and "row 3: nan" in found[0]["message"] and "row 9: 1.5" in found[0]["message"]


def test_prediction_against_test_ids(tiny_data, tmp_path, harness_cli):
    test = tiny_data / DATASET_DIR / "test.parquet"
    n = pl.scan_parquet(test).select(pl.len()).collect().item()
    good = tmp_path / "prediction.csv"
    _prediction(n).write_csv(good)
    assert harness_cli("validate", good, "--test", test)[0] == 0
    short = tmp_path / "short" / "prediction.csv"
    short.parent.mkdir()
    _prediction(n - 1).write_csv(short)
    code, out, err = harness_cli("validate", short, "--test", test)
    assert code == 1 and "[prediction.row_count]" in out


def test_wrong_track_column_name(tmp_path, harness_cli):
    path = tmp_path / "prediction.csv"
    _prediction(10).rename({"Task2": "task2-pred"}).write_csv(path)
    code, out, err = harness_cli("validate", path)
    assert code == 1 and "[schema.prediction_columns]" in out


def test_schema_checks_survive_pandera_switch_off(tiny_data, tmp_path):
    bad = tmp_path / "prediction.csv"
    _prediction(20).with_columns(pl.lit(2.0).alias("Task2")).write_csv(bad)
    env = dict(os.environ, PANDERA_VALIDATION_ENABLED="False", PANDERA_VALIDATION_DEPTH="SCHEMA_ONLY")
    proc = subprocess.run([sys.executable, "-m", "harness", "validate", str(bad)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "data.Task2_score" in proc.stdout


def test_writer_entry_points(tiny_data):
    info = pl.read_parquet(tiny_data / DATASET_DIR / "item_info.parquet")
    assert validate_item_info(info, n_items=info.height - 1) == []
    assert [f.id for f in validate_item_info(info, n_items=info.height)] == ["data.item_count"]
    pred = _prediction(5)
    assert validate_prediction(pred, test_ids=np.arange(5)) == []
    assert [f.id for f in validate_prediction(pred, test_ids=np.arange(1, 6))] == ["prediction.ids"]
    with pytest.raises(TypeError):
        validate_frame(pred.lazy(), "prediction")


def test_item_seq_stored_as_a_list_reads_as_the_array(tiny_copy, harness_cli):
    """pandas writes fixed-length sequences as variable-length lists: 64-long rows are one warning and the
    same tensors for Task 2; rows of other lengths are one error line, never a traceback."""
    import torch

    from task2.data import read_split

    valid = tiny_copy / DATASET_DIR / "valid.parquet"
    before = read_split(valid, n_items=401).item_seq.clone()
    frame = pl.read_parquet(valid)
    frame.with_columns(pl.col("item_seq").cast(pl.List(pl.Int64))).write_parquet(valid)
    code, out, err = harness_cli("validate", tiny_copy)
    assert code == 0 and "[schema.list_column] warning: column item_seq is stored as a list" in out
    assert torch.equal(read_split(valid, n_items=401).item_seq, before)
    uneven = pl.when(pl.int_range(pl.len()) == 3).then(pl.col("item_seq").list.slice(0, 10)).otherwise(
        pl.col("item_seq"))
    pl.read_parquet(valid).with_columns(uneven.alias("item_seq")).write_parquet(valid)
    code, out, err = harness_cli("validate", valid)
    assert code == 1 and "Traceback" not in out + err
    assert "[schema.list_length] error: column item_seq: a list of 10..64 items per row" in out
