"""Figures of the evaluation protocol: reliability diagram, robustness curves, image grids
(error review, Grad-CAM) and the cross-dataset heatmap (no pyplot state, no TensorFlow)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from deepfake_detect.metrics.calibration import Reliability
from deepfake_detect.metrics.plots import _figure, _save

ROBUSTNESS_METRICS = ("auc", "eer", "acc")


def reliability_diagram(curve: Reliability, title: str, path: Path) -> Path:
    """Fraction of positives against mean probability per bin, bar widths the bins, with ECE;
    a histogram of the scores below."""
    fig = _figure((4.6, 5.4))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    widths = np.diff(curve.edges)
    used = np.searchsorted(curve.edges[1:-1], curve.mean_prob)
    top.bar(
        curve.edges[:-1][used],
        curve.positive_rate,
        widths[used],
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="fraction positive",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.set_ylabel("fraction of positives")
    top.set_title(f"{title}: ECE {curve.ece:.4f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(curve.edges[:-1][used], curve.counts, widths[used], align="edge", color="grey")
    bottom.set_xlabel("predicted probability of the positive class")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    return _save(fig, path, tight=True)


def robustness_curves(
    clean: Mapping[str, float],
    levels: Sequence[tuple[str, str, float, Mapping[str, float]]],
    title: str,
    path: Path,
) -> Path:
    """One panel per perturbation kind: AUC, EER and ACC against its level; the clean values
    as dotted lines. ``levels`` holds ``(kind, label, level, metrics)``."""
    kinds = list(dict.fromkeys(kind for kind, *_ in levels))
    fig = _figure((4.2 * max(len(kinds), 1), 3.8))
    axes = np.atleast_1d(fig.subplots(1, max(len(kinds), 1)))
    for axis, kind in zip(axes, kinds, strict=False):
        points = sorted((lv, m) for k, _, lv, m in levels if k == kind)
        if kind in ("jpeg", "scale"):  # from mild (a high level) to strong, left to right
            points = points[::-1]
        positions = range(len(points))
        for colour, name in zip(
            ("tab:blue", "tab:red", "tab:green"), ROBUSTNESS_METRICS, strict=True
        ):
            axis.plot(positions, [m[name] for _, m in points], marker="o", color=colour, label=name)
            axis.axhline(clean[name], linestyle=":", color=colour)
        axis.set_xticks(list(positions), [f"{lv:g}" for lv, _ in points])
        axis.set_xlabel({"jpeg": "JPEG quality", "scale": "scale factor"}.get(kind, "sigma"))
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(f"{title}: {kind}")
        axis.legend(fontsize=8, loc="lower left")
    return _save(fig, path, tight=True)


def image_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    title: str,
    path: Path,
    heatmaps: Sequence[np.ndarray] | None = None,
    columns: int = 4,
) -> Path:
    """Images (uint8 H x W x 3) in a grid with a caption each; with ``heatmaps`` (H x W in
    [0, 1]) a Grad-CAM overlay on each."""
    count = max(len(images), 1)
    rows = -(-count // columns)
    fig = _figure((2.6 * columns, 2.9 * rows + 0.5))
    fig.suptitle(title)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for index, axis in enumerate(axes):
        axis.axis("off")
        if index >= len(images):
            continue
        axis.imshow(images[index])
        if heatmaps is not None:
            axis.imshow(heatmaps[index], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axis.set_title(captions[index], fontsize=7)
    if not images:
        axes[0].text(0.5, 0.5, "none", ha="center", va="center")
    return _save(fig, path, tight=True)


def cross_dataset_heatmap(
    rows: Sequence[str], columns: Sequence[str], values: np.ndarray, metric: str, path: Path
) -> Path:
    """``metric`` per (model, test dataset), one labelled cell each (blank: not evaluated)."""
    fig = _figure((1.9 * len(columns) + 3.5, 0.7 * len(rows) + 1.8))
    axis = fig.add_subplot()
    grid = np.ma.masked_invalid(np.asarray(values, dtype=float))
    reverse = metric.endswith("eer")  # lower is better: the same colours mean the same
    image = axis.imshow(
        grid, cmap="viridis_r" if reverse else "viridis", vmin=0, vmax=1, aspect="auto"
    )
    for (row, col), value in np.ndenumerate(np.asarray(values, dtype=float)):
        text = "-" if np.isnan(value) else f"{value:.3f}"
        axis.text(
            col,
            row,
            text,
            ha="center",
            va="center",
            color="white" if not np.isnan(value) and (value < 0.5) != reverse else "black",
        )
    axis.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
    axis.set_yticks(range(len(rows)), rows)
    axis.set_xlabel("test dataset")
    axis.set_ylabel("model (trained on)")
    axis.set_title(f"cross-dataset {metric}")
    fig.colorbar(image, label=metric)
    return _save(fig, path, tight=True)
