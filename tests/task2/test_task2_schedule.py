"""The training contract: the plateau schedule, early stopping, the best epoch's weights, clipping,
Track 1's tunables fitted to the data. The valid AUC sequence is scripted (the metric is replaced), so
each rule is checked against a known trajectory, on mini data, in seconds."""

from __future__ import annotations

import json

import pytest
import torch

import task2.train as train_mod
from task2.predict import load_run
from task2.din import fit_din_tunables
from task2.train import load_train_config, train

from task2_fixtures import FAST_TRAIN

QUIET = dict(log=lambda m: None, progress=False)


def _scripted(monkeypatch, aucs: list[float]) -> list:
    """Replace the valid AUC by `aucs`, one per epoch; record a digest of the weights at each evaluation."""
    seen = []
    it = iter(aucs)

    def fake_auc(labels, scores):
        seen.append(scores.copy())
        return next(it)

    monkeypatch.setattr(train_mod, "roc_auc", fake_auc)
    return seen


def _rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_plateau_decay_early_stop_and_the_best_epochs_weights(monkeypatch, mini_data, tmp_path):
    seen = _scripted(monkeypatch, [0.60, 0.70, 0.65, 0.71, 0.69, 0.68, 0.99])
    cfg = load_train_config(None, **dict(FAST_TRAIN, epochs=10, learning_rate=1e-3, lr_decay=0.5,
                                         early_stop_patience=2, min_learning_rate=2e-4))
    run = train(mini_data, tmp_path / "run", cfg, **QUIET)
    rows = _rows(tmp_path / "run")
    # epochs 5 and 6 bring no new best: patience 2 stops after epoch 6; the scripted 0.99 is never reached
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert run["best_epoch"] == 4 and run["best_valid_auc"] == 0.71 and run["epochs_run"] == 6
    assert run["stop_reason"].startswith("plateau: no new best valid AUC for 2 epochs")
    # constant lr while improving, x0.5 after each epoch without a new best, never below the floor
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    assert [r["best"] for r in rows] == [True, True, False, True, False, False]
    # the saved weights are epoch 4's (scored on valid at the time), not the last epoch's
    from task2.data import read_split, split_path
    from task2.predict import score_split

    model = load_run(tmp_path / "run")
    valid = read_split(split_path(mini_data, "valid"), n_items=model.cfg.n_items)
    scores = score_split(model, valid).numpy()
    assert (scores == seen[3]).all() and not (scores == seen[5]).all()


def test_plateau_periods_decide_on_enough_steps_not_on_each_short_epoch(monkeypatch, mini_data, tmp_path):
    """3,000 rows at batch 256 are 12 steps an epoch; plateau_steps 20 makes each decision read two epochs.
    The same AUCs that stop an epoch-by-epoch schedule after epoch 4 run to epoch 6 here, the lr decays
    once per period without a new best, and the checkpoint is still the best single epoch's."""
    aucs = [0.60, 0.70, 0.65, 0.66, 0.64, 0.63, 0.99, 0.99]
    base = dict(FAST_TRAIN, epochs=10, learning_rate=1e-3, lr_decay=0.5, early_stop_patience=2)
    _scripted(monkeypatch, list(aucs))
    short = train(mini_data, tmp_path / "short", load_train_config(None, **base), **QUIET)
    assert short["epochs_run"] == 4 and short["best_epoch"] == 2
    _scripted(monkeypatch, list(aucs))
    run = train(mini_data, tmp_path / "run", load_train_config(None, **dict(base, plateau_steps=20)), **QUIET)
    rows = _rows(tmp_path / "run")
    assert [r["plateau_decision"] for r in rows] == [False, True, False, True, False, True]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4])
    assert run["best_epoch"] == 2 and run["epochs_run"] == 6
    assert run["stop_reason"].startswith("plateau: no new best valid AUC for 2 plateau periods (each >= 1 epoch "
                                         "and 20 steps)")


def test_run_record_states_the_noise_and_the_base_rate(mini_data, tmp_path):
    """run.json carries the valid AUC's standard error and the base rate's BCE; a model started at the base
    rate's log-odds is below that BCE after its first epoch."""
    run = train(mini_data, tmp_path / "run", load_train_config(None, **FAST_TRAIN), **QUIET)
    first = _rows(tmp_path / "run")[0]
    assert 0.0 < run["best_valid_auc_se"] < 0.05 and run["base_rate"] == pytest.approx(0.25, abs=0.02)
    assert first["valid_loss"] < run["base_rate_valid_loss"] < 0.6


def test_small_data_halves_the_batch_until_an_epoch_has_enough_steps(mini_data, tmp_path):
    from task2.train import batch_for_steps

    assert batch_for_steps(15_000, 512, 100) == 128  # 30 steps at 512, 59 at 256, 118 at 128
    assert batch_for_steps(40_000, 512, 100) == 256 and batch_for_steps(3_600_000, 512, 100) == 512
    assert batch_for_steps(1_000, 512, 100) == 128  # the floor holds even when the steps fall short
    assert batch_for_steps(1_000, 64, 100) == 64  # never above what was asked
    assert batch_for_steps(15_000, 512, 0) == 512
    # 3,000 rows: 12 steps at 256, 24 at 128; the run records the batch it used and why
    run = train(mini_data, tmp_path / "run", load_train_config(None, **dict(FAST_TRAIN, epochs=1, min_epoch_steps=20)),
                **QUIET)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["batch_size"] == 128 and run["fitted_to_data"]["largest_batch_size"] == 256


def test_auc_standard_error_is_hanley_mcneils():
    from task2.train import auc_standard_error

    assert auc_standard_error(0.95, 600, 1_800) == pytest.approx(0.0063, abs=1e-4)  # 2,400 rows, 600 clicks
    assert auc_standard_error(0.97, 2_500, 7_500) == pytest.approx(0.0024, abs=2e-4)  # 10,000 rows, 25 % clicks
    assert auc_standard_error(0.5, 10, 0) != auc_standard_error(0.5, 10, 0)  # nan without negatives


def test_lr_floor_and_epoch_cap_reason(monkeypatch, mini_data, tmp_path):
    _scripted(monkeypatch, [0.6, 0.5, 0.5, 0.7])
    cfg = load_train_config(None, **dict(FAST_TRAIN, epochs=4, learning_rate=1e-3, lr_decay=0.1,
                                         early_stop_patience=3, min_learning_rate=5e-5))
    run = train(mini_data, tmp_path / "run", cfg, **QUIET)
    assert [r["lr"] for r in _rows(tmp_path / "run")] == pytest.approx([1e-3, 1e-3, 1e-4, 5e-5])
    assert run["stop_reason"].startswith("epoch cap: 4 epochs run, the last a new best")
    assert run["best_epoch"] == 4 and not run["stopped_early"]


def test_epoch_decay_multiplies_every_epoch(monkeypatch, mini_data, tmp_path):
    _scripted(monkeypatch, [0.6, 0.7, 0.65])
    cfg = load_train_config(None, **dict(FAST_TRAIN, epochs=3, learning_rate=1e-3, lr_epoch_decay=0.5,
                                         lr_decay=0.5))
    train(mini_data, tmp_path / "run", cfg, **QUIET)
    assert [r["lr"] for r in _rows(tmp_path / "run")] == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_gradient_clipping_bounds_the_update(monkeypatch, mini_data, tmp_path):
    norms = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        total = real_clip(params, max_norm, *a, **k)  # the norm before clipping
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        norms.append((float(total), float(after), max_norm))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train(mini_data, tmp_path / "run", load_train_config(None, **dict(FAST_TRAIN, epochs=1, grad_clip=0.05)), **QUIET)
    assert norms and all(after <= clip * (1 + 1e-4) for _, after, clip in norms)
    assert any(before > clip for before, _, clip in norms)  # the bound was active


def test_default_schedule_assumes_no_data_size():
    cfg = load_train_config(None)
    assert cfg.lr_epoch_decay == 1.0 and cfg.lr_decay < 1.0 and cfg.early_stop_patience >= 2
    assert cfg.epochs >= 50  # a cap the plateau reaches first, not a schedule


def test_din_tunables_fitted_to_the_data():
    official = fit_din_tunables(3_600_000)
    assert (official["batch_size"], official["learning_rate"]) == (8192, 1e-3)
    demo = fit_din_tunables(120_000)
    assert demo["batch_size"] == 256 and demo["learning_rate"] == pytest.approx(1e-3 * (256 / 8192) ** 0.5, rel=1e-5)
    assert 120_000 / demo["batch_size"] >= 3_600_000 // 8192 > 120_000 / (2 * demo["batch_size"])
    assert fit_din_tunables(16_000)["batch_size"] == 128  # the floor
    cfg = load_train_config(None, model_class="DIN")
    assert cfg.fit_to_data and cfg.batch_size == 8192  # replaced once the rows are known
    assert not load_train_config(None, model_class="DIN", batch_size=1024).fit_to_data
    assert not load_train_config(None, model_class="DIN", learning_rate=1e-4).fit_to_data
    with pytest.raises(Exception, match="fit_to_data"):
        load_train_config(None, fit_to_data=True)


def test_din_run_records_the_fitted_tunables(mini_data, tmp_path):
    cfg = load_train_config(None, model_class="DIN", epochs=1,
                            model={"embedding_dim": 8, "attention_units": [32, 16], "dnn_units": [64, 32],
                                   "max_len": 16})
    run = train(mini_data, tmp_path / "din", cfg, **QUIET)
    fitted = run["fitted_to_data"]
    assert fitted["train_rows"] == 3000 and fitted["batch_size"] == 128
    config = json.loads((tmp_path / "din" / "config.json").read_text())
    assert config["train"]["batch_size"] == 128 and config["fitted_to_data"] == fitted
