"""The nine tracked metrics as Keras objects, each with an explicit name (no `_1` suffixes)."""

from __future__ import annotations

import keras


def tracked_metrics(threshold: float = 0.5) -> list[keras.metrics.Metric]:
    """acc, precision, recall, auc, fn, fp, tn, tp (loss comes from the loss function)."""
    return [
        keras.metrics.BinaryAccuracy(name="acc", threshold=threshold),
        keras.metrics.Precision(name="precision", thresholds=threshold),
        keras.metrics.Recall(name="recall", thresholds=threshold),
        keras.metrics.AUC(name="auc"),
        keras.metrics.FalseNegatives(name="fn", thresholds=threshold),
        keras.metrics.FalsePositives(name="fp", thresholds=threshold),
        keras.metrics.TrueNegatives(name="tn", thresholds=threshold),
        keras.metrics.TruePositives(name="tp", thresholds=threshold),
    ]
