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
