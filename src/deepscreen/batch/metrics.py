"""Evaluation metrics for a labelled batch, in plain numpy.

Written here rather than imported from deepscreen.training, which batch jobs must not depend on (it pulls in the
generator side). y = 1 for fake, 0 for real; s = the calibrated probability of manipulation.
"""

from __future__ import annotations

import numpy as np


def auc(y, s) -> float:
    """Area under the ROC curve = P(a random fake scores above a random real), ties counted half
    (the Mann-Whitney U statistic from average ranks)."""
    y, s = np.asarray(y, bool), np.asarray(s, float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average rank of each distinct score: the ranks it spans, 1-based
    upper = np.cumsum(counts)
    mean_rank = upper - (counts - 1) / 2
    ranks = mean_rank[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(y, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), flagging s >= threshold, from (0, 0) to (1, 1)."""
    y, s = np.asarray(y, bool), np.asarray(s, float)
    thresholds = np.unique(s)[::-1]
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    tpr = np.array([len(pos) - np.searchsorted(pos, t, "left") for t in thresholds]) / max(len(pos), 1)
    fpr = np.array([len(neg) - np.searchsorted(neg, t, "left") for t in thresholds]) / max(len(neg), 1)
    return (np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]),
            np.concatenate([[np.inf], thresholds]))


def eer(y, s) -> tuple[float, float]:
    """Equal error rate (where the share of reals flagged meets the share of fakes missed) and its threshold."""
    y = np.asarray(y, bool)
    if y.all() or not y.any():
        return float("nan"), float("nan")
    fpr, tpr, thr = roc_curve(y, s)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    return float((fpr[i] + fnr[i]) / 2), float(thr[i])


def log_loss(y, p, eps: float = 1e-6) -> float:
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    y = np.asarray(y, float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(y, p, bins: int = 10) -> list[dict]:
    """Equal-width probability bins: mean predicted probability against the observed share of fakes."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        out.append({"low": b / bins, "high": (b + 1) / bins, "count": int(sel.sum()),
                    "mean_probability": float(p[sel].mean()) if sel.any() else None,
                    "share_fake": float(y[sel].mean()) if sel.any() else None})
    return out


def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error: |observed - predicted| over the bins, weighted by how many files fall in each."""
    table = reliability(y, p, bins)
    n = sum(b["count"] for b in table)
    return float(sum(b["count"] * abs(b["share_fake"] - b["mean_probability"]) for b in table if b["count"]) / n) \
        if n else float("nan")
