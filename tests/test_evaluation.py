"""NumPy metrics used for test/evaluate: exact AUC, Youden threshold, counts."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_detect.metrics.binary import binary_metrics, roc_auc, roc_curve, youden_threshold


def pairwise_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)  # many ties
    assert roc_auc(y, p) == pytest.approx(pairwise_auc(y, p), abs=1e-12)


@pytest.mark.parametrize(
    ("y", "p"),
    [
        ([0, 1], [0.2, 0.8]),
        ([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9]),
        ([0, 1, 1], [0.4, 0.4, 0.9]),
    ],
)
def test_youden_threshold_applied_with_the_same_rule_reaches_its_j(y, p):
    """The returned threshold, applied as ``prob > t``, achieves the best J on the ROC."""
    y, p = np.array(y), np.array(p)
    threshold = youden_threshold(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    metrics = binary_metrics(y, p, threshold=threshold)
    recall = metrics["tp"] / (metrics["tp"] + metrics["fn"])
    fall_out = metrics["fp"] / (metrics["fp"] + metrics["tn"])
    assert recall - fall_out == pytest.approx(float(np.max(tpr - fpr)))


def test_youden_threshold_on_a_perfect_model_gives_recall_one():
    threshold = youden_threshold(np.array([0, 1]), np.array([0.2, 0.8]))
    assert 0.2 <= threshold < 0.8
    metrics = binary_metrics(np.array([0, 1]), np.array([0.2, 0.8]), threshold=threshold)
    assert metrics["recall"] == 1.0 and metrics["acc"] == 1.0


def test_youden_threshold_random_scores_match_the_best_cut():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.round(rng.random(400) * 0.6 + 0.3 * y, 3)
    threshold = youden_threshold(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    m = binary_metrics(y, p, threshold=threshold)
    assert m["tp"] / (m["tp"] + m["fn"]) - m["fp"] / (m["fp"] + m["tn"]) == pytest.approx(
        float(np.max(tpr - fpr))
    )


def test_counts_rates_and_loss():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.6, 0.1])
    metrics = binary_metrics(y, p)
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (1, 1, 1, 1)
    assert metrics["acc"] == metrics["precision"] == metrics["recall"] == 0.5
    expected = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert metrics["loss"] == pytest.approx(expected)
