"""bench/bench_attainable.py's reference: EM for a mixture of multinomials finds the groups a history was
drawn from, and scores a target by the posterior predictive."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # the script imports its sibling _common
_spec = importlib.util.spec_from_file_location("bench_attainable_module", BENCH / "bench_attainable.py")
attainable = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attainable)


def _rows(rng, users: int, first_user: int = 0) -> pl.DataFrame:
    """Each user draws 6 history items and one clicked item from items 1..10 (group 0) or 11..20 (group 1);
    a row per user with its click (label 1) and one with an item of the other group (label 0)."""
    group = rng.integers(0, 2, users)
    hist = 1 + 10 * group[:, None] + rng.integers(0, 10, (users, 6))
    seq = np.zeros((users, 64), dtype=np.int64)
    seq[:, -6:] = hist
    click = 1 + 10 * group + rng.integers(0, 10, users)
    other = 1 + 10 * (1 - group) + rng.integers(0, 10, users)
    uid = np.arange(first_user, first_user + users)
    return pl.DataFrame({"user_id": np.concatenate([uid, uid]), "item_seq": np.concatenate([seq, seq]).tolist(),
                         "item_id": np.concatenate([click, other]), "label": np.repeat([1, 0], users)})


def test_em_reference_separates_the_groups_the_histories_came_from():
    rng = np.random.default_rng(0)
    train, valid = _rows(rng, 200), _rows(rng, 100, first_user=1000)
    bags = attainable.training_bags(train)
    assert bags.shape[0] == 200 and bags.sum() == 200 * 7  # six history items and one click per user
    log_p, log_prior = attainable.fit_mixture(bags, 21, 2, alpha=0.1, iters=50)
    assert log_p.shape == (2, 21) and np.isneginf(log_p[:, 0]).all()  # padding is never drawn
    np.testing.assert_allclose(np.exp(log_p[:, 1:]).sum(axis=1), 1.0)
    s = attainable.score(valid, log_p, log_prior)
    y = valid["label"].to_numpy()
    assert (s[y == 1] > s[y == 0]).all()  # every click above its user's other-group item
