"""core.metrics: the competition's AUC and the paired DeLong test used to compare two models' test AUC."""

from __future__ import annotations

import numpy as np
import pytest

from core.metrics import auc, paired_auc_difference


def _delong_by_pairs(y, a, b):
    """DeLong's variance of AUC(a) - AUC(b) from its definition: every positive against every negative."""
    pos, neg = y == 1, y == 0

    def psi(s):  # (m, n): 1 if the positive outranks the negative, 1/2 on a tie
        d = s[pos][:, None] - s[neg][None, :]
        return (d > 0) + 0.5 * (d == 0)

    pa, pb = psi(a), psi(b)
    m, n = pa.shape
    v10 = np.vstack([pa.mean(1), pb.mean(1)])
    v01 = np.vstack([pa.mean(0), pb.mean(0)])
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return pa.mean() - pb.mean(), np.sqrt(var)


def test_paired_auc_difference_matches_delong_by_pairs_with_ties():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    a = np.round(y + rng.normal(size=300), 1)  # rounded: ties within and across classes
    b = np.round(0.5 * y + a * 0.5 + rng.normal(size=300), 1)
    diff, se = paired_auc_difference(y, a, b)
    want_diff, want_se = _delong_by_pairs(y, a, b)
    assert diff == pytest.approx(auc(y, a) - auc(y, b), abs=1e-12)
    assert diff == pytest.approx(want_diff, abs=1e-12)
    assert se == pytest.approx(want_se, rel=1e-9)
    assert se > 0


def test_paired_auc_difference_of_a_model_with_itself_is_zero_and_one_class_is_nan():
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.5).astype(int)
    s = rng.normal(size=200) + y
    assert paired_auc_difference(y, s, s) == (0.0, 0.0)
    assert paired_auc_difference(y, s, 3 * s + 1) == (0.0, 0.0)  # AUC reads ranks only
    assert all(np.isnan(paired_auc_difference(np.ones(10), s[:10], s[:10])))
