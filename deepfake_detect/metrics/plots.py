"""Matplotlib figures logged as artifacts (no pyplot state, no TensorFlow).

Per-run plots use fixed margins instead of ``tight_layout`` and the object API instead of
pyplot: a sweep draws seven of them per trial, and this makes them about a third cheaper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from deepfake_detect.metrics.binary import precision_recall_curve, roc_curve

SMALL_MARGINS = {"left": 0.17, "right": 0.95, "bottom": 0.13, "top": 0.9}
WIDE_MARGINS = {"left": 0.05, "right": 0.98, "bottom": 0.15, "top": 0.88, "wspace": 0.25}
LABEL_MARGINS = {"left": 0.27, "right": 0.97, "bottom": 0.1, "top": 0.9}


def _figure(figsize: tuple[float, float], margins: dict[str, float] | None = None) -> Figure:
    """A pyplot-free figure with fixed margins (no layout pass when saving)."""
    fig = Figure(figsize=figsize)
    if margins:
        fig.subplots_adjust(**margins)
    return fig


def _save(fig: Figure, path: Path, tight: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for axis in fig.axes:  # tick creation dominates drawing small plots: keep them few
        if axis.get_yscale() == "linear":
            axis.locator_params(axis="y", nbins=5)
        if (
            axis.get_xscale() == "linear"
            and type(axis.xaxis.get_major_locator()) is not MaxNLocator
        ):
            axis.locator_params(axis="x", nbins=5)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    return path


def training_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Train vs validation loss, accuracy and AUC per epoch."""
    fig = _figure((13, 3.8), WIDE_MARGINS)
    axes = fig.subplots(1, 3)
    for axis, name in zip(axes, ("loss", "acc", "auc"), strict=True):
        for split in ("train", "val"):
            values = history.get(f"{split}_{name}", [])
            axis.plot(range(len(values)), values, marker="o", label=split)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axis.legend()
    return _save(fig, path)


def confusion_matrix(
    counts: Mapping[str, float], class_names: Sequence[str], title: str, path: Path
) -> Path:
    """2x2 confusion matrix; rows are true classes ``[negative, positive]``."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    fig = _figure((4.2, 3.8), LABEL_MARGINS)
    axis = fig.add_subplot()
    axis.imshow(matrix, cmap="Blues", aspect="auto")
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, f"{int(value)}", ha="center", va="center", fontsize=12)
    axis.set_xticks([0, 1], [f"pred {c}" for c in class_names])
    axis.set_yticks([0, 1], [f"true {c}" for c in class_names])
    axis.set_title(title)
    return _save(fig, path)


def roc_plot(y_true: np.ndarray, prob: np.ndarray, auc: float, title: str, path: Path) -> Path:
    """ROC curve with its AUC."""
    fpr, tpr, _ = roc_curve(y_true, prob)
    fig = _figure((4.2, 4), SMALL_MARGINS)
    axis = fig.add_subplot()
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
    fig = _figure((4.2, 4), SMALL_MARGINS)
    axis = fig.add_subplot()
    axis.plot(recall, precision)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_ylim(0, 1.02)
    axis.set_title(title)
    return _save(fig, path)


def metric_bars(labels: Sequence[str], values: Sequence[float], metric: str, path: Path) -> Path:
    """Horizontal bar chart of one metric per model, best on top."""
    fig = _figure((7, 0.45 * max(len(labels), 2) + 1.2))
    axis = fig.add_subplot()
    positions = np.arange(len(labels))[::-1]
    axis.barh(positions, values, color="tab:blue")
    axis.set_yticks(positions, labels)
    axis.set_xlabel(metric)
    finite = [value for value in values if np.isfinite(value)]
    if finite and max(finite) > 0:
        axis.set_xlim(0, max(finite) * 1.15)  # room for the value labels
    for position, value in zip(positions, values, strict=True):
        if np.isfinite(value):
            axis.text(value, position, f" {value:.4f}", va="center", fontsize=8)
    return _save(fig, path, tight=True)


GRID_MAX_AXIS = 8  # more distinct values than this on an axis (Optuna): a scatter instead


def sweep_grid(
    dropouts: Sequence[float],
    lrs: Sequence[float],
    values: Sequence[float],
    metric: str,
    path: Path,
    higher_is_better: bool = True,
) -> Path:
    """``metric`` over (dropout, lr): a heatmap with one labelled cell per grid point (the
    best one outlined); a log-lr scatter when the points do not form a small grid."""
    rows = sorted({float(d) for d in dropouts if np.isfinite(d)})
    cols = sorted({float(lr) for lr in lrs if np.isfinite(lr)})
    if not rows or not cols or max(len(rows), len(cols)) > GRID_MAX_AXIS:
        return _sweep_scatter(dropouts, lrs, values, metric, path)
    cells: dict[tuple[int, int], list[float]] = {}
    for dropout, lr, value in zip(dropouts, lrs, values, strict=True):
        if np.isfinite(dropout) and np.isfinite(lr):
            cells.setdefault((rows.index(float(dropout)), cols.index(float(lr))), []).append(value)
    grid = np.full((len(rows), len(cols)), np.nan)
    for cell, found in cells.items():  # several runs of one point (other seeds): their mean
        grid[cell] = float(np.mean(found))
    fig = _figure((1.6 * len(cols) + 2.4, 0.9 * len(rows) + 1.6))
    axis = fig.add_subplot()
    image = axis.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    pick = np.nanargmax if higher_is_better else np.nanargmin
    best = np.unravel_index(pick(grid), grid.shape) if np.isfinite(grid).any() else None
    for (row, col), value in np.ndenumerate(grid):
        runs = len(cells.get((row, col), []))
        text = (
            "no run"
            if np.isnan(value)
            else f"{value:.3f}" + (f"\n(mean of {runs})" if runs > 1 else "")
        )
        weight = "bold" if best == (row, col) else "normal"
        colour = "white" if not np.isnan(value) and value < np.nanmean(grid) else "black"
        axis.text(col, row, text, ha="center", va="center", color=colour, weight=weight)
    axis.set_xticks(range(len(cols)), [f"{lr:g}" for lr in cols])
    axis.set_yticks(range(len(rows)), [f"{d:g}" for d in rows])
    axis.set_xlabel("optimizer.lr")
    axis.set_ylabel("model.dropout")
    axis.set_title(f"{metric} (best epoch) per grid point")
    fig.colorbar(image, label=metric)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def _sweep_scatter(
    dropouts: Sequence[float],
    lrs: Sequence[float],
    values: Sequence[float],
    metric: str,
    path: Path,
) -> Path:
    """Scattered (e.g. Optuna) points: lr on a log axis, coloured by ``metric``."""
    fig = _figure((5.5, 4.2))
    axis = fig.add_subplot()
    points = axis.scatter(lrs, dropouts, c=values, cmap="viridis", s=120, edgecolors="black")
    axis.set_xscale("log")
    axis.set_xlabel("optimizer.lr")
    axis.set_ylabel("model.dropout")
    fig.colorbar(points, label=metric)
    return _save(fig, path, tight=True)


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
