"""Binary classification metrics from probabilities (NumPy only; same names as training)."""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # Keras' clipping for binary cross-entropy
DEFAULT_THRESHOLD = 0.5  # the seed's convention (and Keras' threshold metrics)


def _cumulative_counts(
    y_true: np.ndarray, prob: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """At each distinct threshold (descending): TP count, predicted-positive count, threshold."""
    actual = np.asarray(y_true).ravel().astype(bool)
    prob = np.asarray(prob, dtype=np.float64).ravel()
    order = np.argsort(-prob, kind="stable")
    prob, actual = prob[order], actual[order]
    distinct = np.r_[np.flatnonzero(np.diff(prob)), len(prob) - 1]
    return np.cumsum(actual)[distinct], distinct + 1, prob[distinct], int(actual.sum())


def roc_curve(y_true: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (descending), starting at (0, 0)."""
    tps, predicted, thresholds, positives = _cumulative_counts(y_true, prob)
    fps = predicted - tps
    tpr = np.r_[0.0, tps / max(positives, 1)]
    fpr = np.r_[0.0, fps / max(int(fps[-1]), 1)]
    return fpr, tpr, np.r_[np.inf, thresholds]


def precision_recall_curve(y_true: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct threshold (descending thresholds)."""
    tps, predicted, _, positives = _cumulative_counts(y_true, prob)
    return tps / predicted, tps / max(positives, 1)


def roc_auc(y_true: np.ndarray, prob: np.ndarray) -> float:
    """Exact area under the ROC curve (ties count half)."""
    fpr, tpr, _ = roc_curve(y_true, prob)
    return float(np.trapezoid(tpr, fpr))


def equal_error_rate(y_true: np.ndarray, prob: np.ndarray) -> float:
    """The EER: where the false-positive rate equals the false-negative rate (1 - TPR).

    Exact on the ROC curve with straight segments between its points (the usual
    ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` of the literature, without a
    solver): ``fpr + tpr - 1`` never decreases along the curve, so it crosses 0 on one segment
    and the crossing is found by linear interpolation. NaN with one class only.
    """
    fpr, tpr, _ = roc_curve(y_true, prob)
    if fpr[-1] == 0 or tpr[-1] == 0:
        return float("nan")
    gap = fpr + tpr - 1.0  # -1 at (0, 0), +1 at (1, 1)
    after = int(np.argmax(gap >= 0))  # the first point on or past the crossing
    if gap[after] == 0 or after == 0:
        return float(fpr[after])
    before = after - 1
    share = -gap[before] / (gap[after] - gap[before])
    return float(fpr[before] + share * (fpr[after] - fpr[before]))


def average_precision(y_true: np.ndarray, prob: np.ndarray) -> float:
    """AP: precision at each distinct threshold weighted by the recall it adds,
    ``sum_n (R_n - R_{n-1}) P_n`` (``sklearn.metrics.average_precision_score``; no
    interpolation). NaN without positives."""
    tps, _, _, positives = _cumulative_counts(y_true, prob)
    if positives == 0:
        return float("nan")
    precision, recall = precision_recall_curve(y_true, prob)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def youden_threshold(y_true: np.ndarray, prob: np.ndarray) -> float:
    """The threshold maximising Youden's J = TPR - FPR, for the rule ``prob > threshold``.

    The best cut keeps the scores ``>= s_k`` positive; the threshold returned is the midpoint
    between ``s_k`` and the next lower distinct score (or just below ``s_k`` when there is
    none), so applying it with ``>`` (as :func:`binary_metrics` and ``predict`` do) selects
    exactly that cut. 0.5 when undefined (one class only).
    """
    fpr, tpr, thresholds = roc_curve(y_true, prob)
    finite = np.isfinite(thresholds)
    if not finite.any() or tpr[-1] == 0 or fpr[-1] == 0:
        return 0.5
    best = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    cut = float(thresholds[best])
    lower = thresholds[best + 1] if best + 1 < len(thresholds) else None
    if lower is None:
        return float(np.nextafter(np.float32(cut), np.float32(-np.inf)))
    return (cut + float(lower)) / 2.0


def binary_metrics(
    y_true: np.ndarray, prob: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, float]:
    """loss, acc, precision, recall, auc, fn, fp, tn, tp (the seed's nine), then eer and ap
    (threshold-free, like auc); prediction is ``prob > threshold``.

    The same rule as Keras' threshold metrics (``y_pred > threshold``) and ``predict``.
    """
    y = np.asarray(y_true).ravel().astype(np.float64)
    p = np.asarray(prob, dtype=np.float64).ravel()
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    predicted = p > threshold
    actual = y > 0.5
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    tn = int(np.sum(~predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    total = max(tp + fp + tn + fn, 1)
    return {
        "loss": loss,
        "acc": (tp + tn) / total,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "auc": roc_auc(y, p),
        "fn": float(fn),
        "fp": float(fp),
        "tn": float(tn),
        "tp": float(tp),
        "eer": equal_error_rate(y, p),
        "ap": average_precision(y, p),
    }
