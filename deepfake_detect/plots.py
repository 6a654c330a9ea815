"""Matplotlib figures logged as artifacts (headless Agg backend, no TensorFlow)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepfake_detect.evaluation import precision_recall_curve, roc_curve  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def training_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Train vs validation loss, accuracy and AUC per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for axis, name in zip(axes, ("loss", "acc", "auc"), strict=True):
        for split in ("train", "val"):
            values = history.get(f"{split}_{name}", [])
            axis.plot(range(len(values)), values, marker="o", label=split)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    return _save(fig, path)


def confusion_matrix(
    counts: Mapping[str, float], class_names: Sequence[str], title: str, path: Path
) -> Path:
    """2x2 confusion matrix; rows are true classes ``[negative, positive]``."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig, axis = plt.subplots(figsize=(4.2, 3.8))
    axis.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, f"{int(value)}", ha="center", va="center", fontsize=12)
    axis.set_xticks([0, 1], [f"pred {c}" for c in class_names])
    axis.set_yticks([0, 1], [f"true {c}" for c in class_names])
    axis.set_title(title)
    return _save(fig, path)


def roc_plot(y_true: np.ndarray, prob: np.ndarray, auc: float, title: str, path: Path) -> Path:
    """ROC curve with its AUC."""
    fpr, tpr, _ = roc_curve(y_true, prob)
    fig, axis = plt.subplots(figsize=(4.2, 4))
    axis.plot(fpr, tpr, label=f"AUC {auc:.3f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title)
    axis.legend(loc="lower right")
    return _save(fig, path)


def pr_plot(y_true: np.ndarray, prob: np.ndarray, title: str, path: Path) -> Path:
    """Precision-recall curve."""
    precision, recall = precision_recall_curve(y_true, prob)
    fig, axis = plt.subplots(figsize=(4.2, 4))
    axis.plot(recall, precision)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_ylim(0, 1.02)
    axis.set_title(title)
    return _save(fig, path)


def metric_bars(labels: Sequence[str], values: Sequence[float], metric: str, path: Path) -> Path:
    """Horizontal bar chart of one metric per model, best on top."""
    fig, axis = plt.subplots(figsize=(7, 0.45 * max(len(labels), 2) + 1.2))
    positions = np.arange(len(labels))[::-1]
    axis.barh(positions, values, color="tab:blue")
    axis.set_yticks(positions, labels)
    axis.set_xlabel(metric)
    for position, value in zip(positions, values, strict=True):
        if np.isfinite(value):
            axis.text(value, position, f" {value:.4f}", va="center", fontsize=8)
    return _save(fig, path)


def sweep_grid(
    dropouts: Sequence[float],
    lrs: Sequence[float],
    values: Sequence[float],
    metric: str,
    path: Path,
) -> Path:
    """``metric`` over (dropout, lr): a scatter coloured by value, lr on a log axis."""
    fig, axis = plt.subplots(figsize=(5.5, 4.2))
    points = axis.scatter(lrs, dropouts, c=values, cmap="viridis", s=120, edgecolors="black")
    for lr, dropout, value in zip(lrs, dropouts, values, strict=True):
        axis.annotate(
            f"{value:.3f}", (lr, dropout), textcoords="offset points", xytext=(6, 6), fontsize=8
        )
    axis.set_xscale("log")
    axis.set_xlabel("optimizer.lr")
    axis.set_ylabel("model.dropout")
    fig.colorbar(points, label=metric)
    return _save(fig, path)


def split_report(
    split: str,
    labels: np.ndarray,
    prob: np.ndarray,
    metrics: Mapping[str, float],
    class_names: Sequence[str],
    out: Path,
) -> None:
    """Confusion matrix, ROC and PR plots of one split, written into ``out``."""
    title = {"val": "validation", "test": "test", "train": "train"}.get(split, split)
    confusion_matrix(
        metrics, class_names, f"Confusion matrix ({title})", out / f"confusion_matrix_{split}.png"
    )
    roc_plot(labels, prob, metrics["auc"], f"ROC ({title})", out / f"roc_{split}.png")
    pr_plot(labels, prob, f"Precision-recall ({title})", out / f"pr_{split}.png")
