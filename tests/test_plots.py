"""Every artifact plot renders a PNG (log axes and colour bars included)."""

from __future__ import annotations

import numpy as np

from deepfake_detect.metrics import plots

PNG = b"\x89PNG"


def test_every_plot_writes_a_png(tmp_path):
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.2, 0.8, 0.4, 0.6, 0.9, 0.1])
    counts = {"tn": 3, "fp": 0, "fn": 0, "tp": 3, "auc": 1.0}
    plots.split_report("val", y, p, counts, ["Real", "Fake"], tmp_path)
    plots.training_curves(
        {"train_loss": [0.7, 0.5], "val_loss": [0.7, 0.6]}, tmp_path / "curves.png"
    )
    plots.metric_bars(["a", "b", "c"], [0.9, float("nan"), 0.5], "val_auc", tmp_path / "bars.png")
    plots.sweep_grid(
        [0.1, 0.3, 0.1], [1e-3, 1e-3, 1e-2], [0.7, 0.8, 0.9], "val_auc", tmp_path / "grid.png"
    )
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == [
        "bars.png",
        "confusion_matrix_val.png",
        "curves.png",
        "grid.png",
        "pr_val.png",
        "roc_val.png",
    ]
    assert all((tmp_path / name).read_bytes()[:4] == PNG for name in written)
