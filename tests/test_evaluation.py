"""NumPy metrics used for test/evaluate: exact AUC, Youden threshold, counts."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_detect.metrics.binary import binary_metrics, roc_auc, youden_threshold


def pairwise_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)  # many ties
    assert roc_auc(y, p) == pytest.approx(pairwise_auc(y, p), abs=1e-12)


def test_youden_threshold_separates_perfectly_separable_scores():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    assert youden_threshold(y, p) == 0.7
    assert binary_metrics(y, p, threshold=0.65)["acc"] == 1.0


def test_counts_rates_and_loss():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.6, 0.1])
    metrics = binary_metrics(y, p)
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (1, 1, 1, 1)
    assert metrics["acc"] == metrics["precision"] == metrics["recall"] == 0.5
    expected = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert metrics["loss"] == pytest.approx(expected)
