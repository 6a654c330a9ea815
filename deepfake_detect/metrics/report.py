"""One evaluate-and-report path: scores of a split -> metrics and plots (training and
``evaluate`` both use it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_detect.metrics import plots
from deepfake_detect.metrics.binary import DEFAULT_THRESHOLD, binary_metrics


@dataclass(frozen=True)
class SplitReport:
    """A split's metrics at 0.5 and, when given, at the model's own decision threshold."""

    metrics: dict[str, float]
    at_threshold: dict[str, float] | None
    threshold: float | None


def report_split(
    split: str,
    labels: np.ndarray,
    prob: np.ndarray,
    class_names: Sequence[str],
    out: Path,
    threshold: float | None = None,
) -> SplitReport:
    """Metrics at 0.5 (and at ``threshold``) plus confusion matrix, ROC and PR plots in ``out``."""
    metrics = binary_metrics(labels, prob, DEFAULT_THRESHOLD)
    at_threshold = binary_metrics(labels, prob, threshold) if threshold is not None else None
    plots.split_report(split, labels, prob, metrics, class_names, out)
    return SplitReport(metrics, at_threshold, threshold)
