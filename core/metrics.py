"""ROC AUC as the competition's scorer computes it."""

from __future__ import annotations

import numpy as np


def auc(labels, scores) -> float:
    """ROC AUC with ties averaged (scikit-learn's roc_auc_score); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.size == 0 or np.unique(labels).size < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def paired_auc_difference(labels, scores_a, scores_b) -> tuple[float, float]:
    """AUC(a) - AUC(b) on the same rows and its standard error by DeLong, DeLong & Clarke-Pearson (1988),
    computed through ranks (Sun & Xu, 2014). The error counts only the sampling of the rows, paired: both
    score the same positives and negatives, so what the two share cancels. NaN, NaN with one class only.

    labels (N,) 0/1, scores_a (N,), scores_b (N,) -> (difference, standard error)."""
    from scipy.stats import rankdata  # 1-based ranks, ties averaged

    y = np.asarray(labels).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    v10, v01, aucs = [], [], []
    for s in (np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)):
        pos, neg = s[y], s[~y]
        r_all = rankdata(np.concatenate([pos, neg]))
        r_pos, r_neg = rankdata(pos), rankdata(neg)
        aucs.append((r_all[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((r_all[:m] - r_pos) / n)  # per positive: share of negatives it outranks
        v01.append(1.0 - (r_all[m:] - r_neg) / m)  # per negative: share of positives that outrank it
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return float(aucs[0] - aucs[1]), float(np.sqrt(max(var, 0.0)))
