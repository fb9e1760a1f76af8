"""Detection metrics and calibration, in plain numpy (no scikit-learn dependency for a few formulas)."""

from __future__ import annotations

import numpy as np

from ..detectors.dsp import sigmoid  # noqa: F401  (one logistic function for scanner and lab)


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random fake > score of a random real), ties counted half."""
    y, s = np.asarray(y, bool), np.asarray(s, float)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    # average ranks over ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def eer(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where false-accept and false-reject rates cross."""
    y, s = np.asarray(y, bool), np.asarray(s, float)
    if y.all() or not y.any():
        return float("nan"), 0.5
    thresholds = np.unique(s)
    far = np.array([np.mean(s[~y] >= t) for t in thresholds])  # reals flagged
    frr = np.array([np.mean(s[y] < t) for t in thresholds])  # fakes missed
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2), float(thresholds[i])


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    y = np.asarray(y, float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| averaged over equal-width probability bins."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / len(p))


def fit_platt(y: np.ndarray, logits: np.ndarray, iters: int = 500) -> tuple[float, float]:
    """Platt scaling p = sigmoid(a*logit + b), fitted by Newton's method on log-loss. Returns (a, b).

    Targets are Platt's (1999) smoothed labels, (n1 + 1) / (n1 + 2) for positives and 1 / (n0 + 2) for negatives:
    when the calibration set happens to be separated perfectly (a strong detector on a few dozen files), 0/1
    targets drive the slope to infinity and every later score to exactly 0 or 1; these keep it finite."""
    y, z = np.asarray(y, float), np.asarray(logits, float)
    n1, n0 = y.sum(), len(y) - y.sum()
    y = np.where(y > 0.5, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))

    def loss(a, b):
        t = a * z + b  # log(1+e^t) - y t, computed stably
        return float(np.sum(np.logaddexp(0, t) - y * t))

    a, b = 0.0, 0.0  # start flat: with p = 0.5 everywhere the Hessian is well conditioned
    for _ in range(iters):
        p = sigmoid(a * z + b)
        g = np.array([np.sum((p - y) * z), np.sum(p - y)])
        w = p * (1 - p) + 1e-9
        hess = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, g)
        current, t = loss(a, b), 1.0
        while t > 1e-6 and loss(a - t * step[0], b - t * step[1]) > current:  # backtrack on overshoot
            t /= 2
        a, b = a - t * step[0], b - t * step[1]
        if np.abs(t * step).max() < 1e-9:
            break
    return float(a), float(b)


def summary(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    y, p = np.asarray(y, int), np.asarray(p, float)
    e, t = eer(y, p)
    pred = p >= threshold
    return {
        "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
        "auc": auc(y, p), "eer": e, "eer_threshold": t, "log_loss": log_loss(y, p),
        "accuracy": float(np.mean(pred == y)), "threshold": threshold,
        "tpr": float(pred[y == 1].mean()) if (y == 1).any() else float("nan"),
        "fpr": float(pred[y == 0].mean()) if (y == 0).any() else float("nan"),
        "ece": ece(y, p),
    }
