"""Calibration of positive-class probabilities: expected calibration error and the bins of a
reliability diagram (NumPy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15  # the usual count (Guo et al. 2017)


@dataclass(frozen=True)
class Reliability:
    """Equal-width bins over [0, 1] of the positive-class probability: per non-empty bin its
    mean probability, the fraction of positives in it and its image count."""

    edges: np.ndarray
    mean_prob: np.ndarray
    positive_rate: np.ndarray
    counts: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean ``|positive rate - mean prob|``."""
        total = int(self.counts.sum())
        if total == 0:
            return float("nan")
        return float(np.sum(self.counts * np.abs(self.positive_rate - self.mean_prob)) / total)


def reliability(y_true: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Bin ``prob`` into ``bins`` equal-width bins (a probability on an inner edge falls into
    the lower bin, as in ``sklearn.calibration.calibration_curve``); empty bins are left out."""
    if bins < 1:
        raise ValueError(f"calibration needs at least 1 bin, got {bins}")
    y = np.asarray(y_true).ravel().astype(np.float64)
    p = np.asarray(prob, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=p, minlength=bins)
    positives = np.bincount(index, weights=y, minlength=bins)
    used = counts > 0
    return Reliability(
        edges=edges,
        mean_prob=sums[used] / counts[used],
        positive_rate=positives[used] / counts[used],
        counts=counts[used],
    )


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the positive-class probability over ``bins`` equal-width bins."""
    return reliability(y_true, prob, bins).ece
