"""Training and prediction end to end: run folder, learning, determinism, reload, DDP, CLI errors."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from core.io import sha256_file
from core.metrics import auc
from task2.data import read_split, split_path
from task2.predict import load_run, predict, score_split
from task2.train import load_train_config, train

from task2_fixtures import FAST_TRAIN

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(log=lambda m: None, progress=False)


def test_run_folder_contents(mini_run, mini_data):
    names = {p.name for p in mini_run.iterdir()}
    assert {"model.safetensors", "model_args.json", "config.json", "metrics.jsonl", "training_curves.png",
            "run.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    rows = [json.loads(line) for line in (mini_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"train_loss", "valid_loss", "valid_auc", "lr", "epoch_s", "samples_per_s"} <= set(r)
        assert 0.5 < r["valid_auc"] <= 1 and r["train_loss"] > 0
    # epoch 1 is always a new best, and the plateau schedule decays only after one that is not
    assert rows[0]["best"] and rows[1]["lr"] == rows[0]["lr"]
    run = json.loads((mini_run / "run.json").read_text())
    assert run["stop_reason"].startswith("epoch cap: 2 epochs") or run["stop_reason"].startswith("plateau")
    assert run["seed"] == 0 and run["seeding"]["deterministic_algorithms"] is True
    assert run["best_valid_auc"] == max(r["valid_auc"] for r in rows)
    assert run["best_epoch"] == 1 + int(np.argmax([r["valid_auc"] for r in rows]))
    assert run["inputs"]["train"]["sha256"] == sha256_file(split_path(mini_data, "train"))
    assert run["env"]["torch"]["version"] == torch.__version__
    args = json.loads((mini_run / "model_args.json").read_text())
    assert args["model_class"] == "SASRecDCN" and args["config"]["id_emb_dim"] == 16
    config = json.loads((mini_run / "config.json").read_text())
    assert config["train"]["batch_size"] == 256 and config["effective_batch_size"] == 256
    assert (mini_run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_reloads_to_the_recorded_valid_auc(mini_run, mini_data):
    from safetensors.torch import load_file

    model = load_run(mini_run)
    state = load_file(str(mini_run / "model.safetensors"))
    assert set(state) == set(model.state_dict())
    assert "items.item_emb_d128" in state  # the frozen table travels with the checkpoint
    valid = read_split(split_path(mini_data, "valid"), n_items=model.cfg.n_items)
    run = json.loads((mini_run / "run.json").read_text())
    got = auc(valid.label.numpy(), score_split(model, valid).numpy())
    assert got == pytest.approx(run["best_valid_auc"], abs=1e-12)
    # without length-aware ordering the scores agree to float rounding
    torch.testing.assert_close(score_split(model, valid, length_aware=False), score_split(model, valid),
                               rtol=0, atol=1e-5)


def test_predict_writes_a_valid_submission(mini_run, mini_data, tmp_path):
    doc = predict(mini_run, mini_data, tmp_path / "out", track=2)
    csv = (tmp_path / "out" / "prediction.csv").read_bytes()
    frame = pl.read_csv(io.BytesIO(csv))
    assert frame.columns == ["ID", "Task2"]
    test = read_split(split_path(mini_data, "test"), labelled=False)
    assert np.array_equal(frame["ID"].to_numpy(), test.ids.numpy())
    expected = torch.sigmoid(score_split(load_run(mini_run), test)).double().numpy()
    np.testing.assert_array_equal(frame["Task2"].to_numpy(), expected)  # reload and predict: equal
    with zipfile.ZipFile(tmp_path / "out" / "prediction.zip") as zf:
        assert zf.namelist() == ["prediction.csv"] and zf.read("prediction.csv") == csv
        assert zf.getinfo("prediction.csv").date_time == (1980, 1, 1, 0, 0, 0)
    assert doc["outputs"]["prediction.csv"] == sha256_file(tmp_path / "out" / "prediction.csv")
    assert json.loads((tmp_path / "out" / "predict.json").read_text()) == doc
    gt = pl.read_csv(mini_data / "oracle" / "ground_truth.csv")
    assert auc(gt["label"].to_numpy(), frame["Task2"].to_numpy()) > 0.6
    predict(mini_run, mini_data, tmp_path / "t3", track=3)
    assert pl.read_csv(tmp_path / "t3" / "prediction.csv").columns == ["ID", "Task1&2"]
    with pytest.raises(UserError, match="track 1 scores the fixed DIN baseline"):
        predict(mini_run, mini_data, tmp_path / "t1", track=1)


def test_same_seed_gives_bit_identical_checkpoint_and_prediction(mini_data, tmp_path):
    cfg = dict(FAST_TRAIN, epochs=1, seed=7)
    paths = []
    for name in ("a", "b"):
        train(mini_data, tmp_path / name, load_train_config(None, **cfg), **QUIET)
        predict(tmp_path / name, mini_data, tmp_path / name / "pred")
        paths.append(tmp_path / name)
    a, b = paths
    for rel in ("model.safetensors", "pred/prediction.csv", "pred/prediction.zip", "metrics.jsonl"):
        if rel == "metrics.jsonl":  # timings differ; every number that is not a timing must not
            strip = lambda p: [{k: v for k, v in json.loads(line).items() if k not in ("epoch_s", "eval_s", "samples_per_s")}
                               for line in p.read_text().splitlines()]  # noqa: E731
            assert strip(a / rel) == strip(b / rel)
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    train(mini_data, tmp_path / "c", load_train_config(None, **dict(cfg, seed=8)), **QUIET)
    assert (tmp_path / "c" / "model.safetensors").read_bytes() != (a / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_default_model_learns_on_tiny(tiny_data, tmp_path):
    """The default architecture, 3 epochs on tiny: valid AUC above the history-blind oracle, which knows
    every item's true appeal, so the model must have read the history; and not above the oracle.
    (Measured: 0.903 against 0.895 and 0.942 on the item world's tiny data.)"""
    oracle = json.loads((tiny_data / "oracle" / "oracle.json").read_text())["auc"]["valid"]
    run = train(tiny_data, tmp_path / "run", load_train_config(None, epochs=3), **QUIET)
    assert run["best_valid_auc"] > oracle["oracle_item_only"], (run["best_valid_auc"], oracle)
    assert run["best_valid_auc"] < oracle["oracle"] + 0.02  # no leak: nothing beats Bayes by much


def test_din_defaults_are_the_official_baseline_training(tmp_path):
    from task2.train import DIN_BASELINE_TRAIN

    cfg = load_train_config(None, model_class="DIN")
    # FuxiCTR 2.3.7's fit: constant lr except x0.1 (floor 1e-6) after an epoch without a new best
    assert (cfg.batch_size, cfg.learning_rate, cfg.early_stop_patience, cfg.lr_decay, cfg.lr_epoch_decay,
            cfg.min_learning_rate) == (8192, 1e-3, 3, 0.1, 1.0, 1e-6)
    path = tmp_path / "din.json"
    path.write_text(json.dumps({"model_class": "DIN", "batch_size": 4096, "model": {"net_dropout": 0.2}}))
    cfg = load_train_config(path)
    assert cfg.batch_size == 4096 and cfg.learning_rate == DIN_BASELINE_TRAIN["learning_rate"]
    assert load_train_config(None).batch_size == 512  # SASRecDCN keeps its own defaults


def test_weight_decay_reaches_adamw_on_matrices_and_embeddings_only(tmp_path):
    from task2.registry import build_model
    from task2.train import make_optimizer

    for model_class in ("SASRecDCN", "MeanPoolMLP", "DIN"):  # Adam unless asked (DIN: its baseline's)
        assert load_train_config(None, model_class=model_class).weight_decay == 0.0, model_class
    model = build_model({"model_class": "MeanPoolMLP", "config": {"n_items": 10}})
    groups = make_optimizer(model, load_train_config(None, weight_decay=0.5)).param_groups
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0]  # matrices and embeddings decay, the rest not
    path = tmp_path / "bad.json"
    for bad in (-1.0, "x", None):
        path.write_text(json.dumps({"weight_decay": bad}))
        with pytest.raises(UserError, match="weight_decay"):
            load_train_config(path)


def test_ema_checkpoint_is_the_average_of_the_steps_and_what_valid_auc_read(monkeypatch, mini_data, tmp_path):
    """ema_decay d: after every step the kept weights move to d * kept + (1 - d) * current (the first step
    copies them); valid AUC and the checkpoint read those, not the last step's weights."""
    from safetensors.torch import load_file
    import task2.train as train_mod

    snapshots: list[dict] = []
    step = train_mod.train_step

    def recording_step(model, raw_model, *args, **kwargs):
        out = step(model, raw_model, *args, **kwargs)
        snapshots.append({k: p.detach().clone() for k, p in raw_model.named_parameters()})
        return out

    monkeypatch.setattr(train_mod, "train_step", recording_step)
    d = 0.8
    run = train(mini_data, tmp_path / "ema", load_train_config(None, **dict(FAST_TRAIN, epochs=1, ema_decay=d)), **QUIET)
    expected = dict(snapshots[0])
    for snap in snapshots[1:]:
        expected = {k: d * expected[k] + (1 - d) * v for k, v in snap.items()}
    state = load_file(str(tmp_path / "ema" / "model.safetensors"))
    assert len(snapshots) > 5
    for k, v in expected.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=1e-6, msg=k)
    assert any(not torch.equal(state[k], snapshots[-1][k]) for k in expected)  # not the last step's weights
    model = load_run(tmp_path / "ema")
    valid = read_split(split_path(mini_data, "valid"), n_items=model.cfg.n_items)
    assert auc(valid.label.numpy(), score_split(model, valid).numpy()) == pytest.approx(run["best_valid_auc"], abs=1e-12)
    path = tmp_path / "bad.json"
    for bad in (-0.1, 1.0):
        path.write_text(json.dumps({"ema_decay": bad}))
        with pytest.raises(UserError, match="ema_decay"):
            load_train_config(path)


def test_din_trains_and_predicts_track1(mini_data, tmp_path):
    cfg = load_train_config(None, model_class="DIN", epochs=1, batch_size=512,
                            model={"embedding_dim": 8, "attention_units": [32, 16], "dnn_units": [64, 32],
                                   "max_len": 16})
    run = train(mini_data, tmp_path / "din", cfg, **QUIET)
    assert run["model_class"] == "DIN" and run["best_valid_auc"] > 0.55
    doc = predict(tmp_path / "din", mini_data, tmp_path / "pred", track=1)
    assert doc["column"] == "Task1"
    assert "item_tags" in load_run(tmp_path / "din").state_dict()


def test_ddp_gloo_two_processes_match_single_process(mini_data, tmp_path):
    """torchrun, 2 CPU processes (gloo), one epoch: parameters equal the single-process run's to 1e-4.

    Dropout, id dropout, the next-item loss (random draws, per rank) and the taste mixture's likelihood (a
    mean over each rank's history items) are off, so both runs compute the same function; the remaining
    difference is the order of floating-point reductions (gradient all-reduce of two half-batch sums vs one
    full-batch sum).
    """
    cfg = dict(FAST_TRAIN, epochs=1, model=dict(FAST_TRAIN["model"], dropout=0.0, id_dropout=0.0, aux_weight=0.0,
                                                 taste_components=0))
    config = tmp_path / "ddp.json"
    config.write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    base = ["train", "--data", str(mini_data), "--config", str(config)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "task2", *base, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained SASRecDCN") == 1  # only rank 0 reports
    train(mini_data, tmp_path / "single", load_train_config(config), **QUIET)
    from safetensors.torch import load_file

    ddp, single = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("ddp", "single"))
    assert set(ddp) == set(single)
    worst = max(float((ddp[k].double() - single[k].double()).abs().max()) for k in ddp)
    assert worst < 1e-4, worst
    run = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert run["world_size"] == 2
    assert run["best_valid_auc"] == pytest.approx(
        json.loads((tmp_path / "single" / "run.json").read_text())["best_valid_auc"], abs=1e-3)


# ---------------------------------------------------------------------------------------------
# The commands: one-line errors with exit code 2, a one-line summary on success


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def test_cli_bad_config_key_and_value(harness_cli, mini_data, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochz": 3}))
    code, out, err = harness_cli("train", "--data", mini_data, "--out", tmp_path / "r", "--config", bad)
    assert code == 2 and str(bad) in _one_error_line(err) and "epochz" in err
    bad.write_text(json.dumps({"model": {"n_layers": "two"}}))
    code, out, err = harness_cli("train", "--data", mini_data, "--out", tmp_path / "r", "--config", bad)
    assert code == 2 and "`model.n_layers` must be an integer, got 'two'" in _one_error_line(err) and str(bad) in err
    bad.write_text("{not json")
    code, out, err = harness_cli("train", "--data", mini_data, "--out", tmp_path / "r", "--config", bad)
    assert code == 2 and "not valid JSON" in _one_error_line(err)
    assert not (tmp_path / "r").exists()


def test_cli_bad_inputs(harness_cli, tiny_copy, mini_run, tmp_path, fast_config):
    x1 = tiny_copy / "MicroLens_1M_x1"
    info = pl.read_parquet(x1 / "item_info.parquet")
    narrow = tmp_path / "item_info_64.parquet"
    info.with_columns(pl.Series("item_emb_d128", info["item_emb_d128"].to_numpy()[:, :64])
                      .cast(pl.Array(pl.Float64, 64))).write_parquet(narrow)
    code, _, err = harness_cli("train", "--data", tiny_copy, "--item-info", narrow, "--out", tmp_path / "r",
                               "--config", fast_config)
    assert code == 2 and "width 64, expected 128" in _one_error_line(err) and str(narrow) in err
    code, _, err = harness_cli("train", "--data", tmp_path / "missing", "--out", tmp_path / "r")
    assert code == 2 and "data folder not found" in _one_error_line(err)
    # a test file whose item ids reach past the checkpoint's item table
    n_items = info.height
    test = pl.read_parquet(x1 / "test.parquet")
    test.with_columns(pl.lit(n_items).cast(pl.Int64).alias("item_id")).write_parquet(x1 / "test.parquet")
    code, _, err = harness_cli("predict", "--run", mini_run, "--data", tiny_copy, "--out", tmp_path / "p")
    assert code == 2 and "beyond the item table" in _one_error_line(err) and "test.parquet" in err
    test.head(0).write_parquet(x1 / "test.parquet")
    code, _, err = harness_cli("predict", "--run", mini_run, "--data", tiny_copy, "--out", tmp_path / "p")
    assert code == 2 and "no rows" in _one_error_line(err)
    code, _, err = harness_cli("predict", "--run", tmp_path / "norun", "--data", tiny_copy, "--out", tmp_path / "p")
    assert code == 2 and "model_args.json: not found" in _one_error_line(err)
    assert not (tmp_path / "p").exists()


def test_cli_refuses_to_overwrite_a_run(harness_cli, mini_data, mini_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mini_run, run)
    code, _, err = harness_cli("train", "--data", mini_data, "--out", run)
    assert code == 2 and "--overwrite" in _one_error_line(err)


def test_python_m_task2_end_to_end(mini_data, tmp_path, fast_config):
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    cfg = json.loads(fast_config.read_text())
    fast_config.write_text(json.dumps(dict(cfg, epochs=1)))
    proc = subprocess.run([sys.executable, "-m", "task2", "train", "--data", str(mini_data), "--out",
                           str(tmp_path / "run"), "--config", str(fast_config), "--seed", "3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("trained SASRecDCN: best valid AUC") and proc.stdout.count("\n") == 1
    assert "epoch 1:" in proc.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["seed"] == 3
    proc = subprocess.run([sys.executable, "-m", "task2", "predict", "--run", str(tmp_path / "run"), "--data",
                           str(mini_data), "--out", str(tmp_path / "pred"), "--track", "3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("wrote ") and "Task1&2" in proc.stdout
