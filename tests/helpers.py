"""Test-only building blocks: an easily learnt dataset, a sabotage callback, CLI runners.

Importable from training subprocesses (``run_cli`` puts the project root on PYTHONPATH), so a
config can name ``tests.helpers.ZeroWeightsAtLastEpoch`` as a Keras callback.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import keras
import numpy as np
from PIL import Image


def write_separable_data(root: Path, size: int = 32, per_class: int = 16, seed: int = 0) -> Path:
    """``root/{Train,Validation,Test}/{Real,Fake}``: dark Real and bright Fake noise images.

    A tiny CNN separates them within an epoch, so a run's best epoch is predictable.
    """
    rng = np.random.default_rng(seed)
    for split, count in (("Train", per_class), ("Validation", per_class // 2), ("Test", 8)):
        for label, (low, high) in (("Real", (0, 110)), ("Fake", (145, 255))):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(low, high, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{label.lower()}_{index:03d}.png")
    return root


class ZeroWeightsAtLastEpoch(keras.callbacks.Callback):
    """Ruins the model for the last epoch (all weights zero, learning rate zero).

    Every prediction of that epoch is 0.5, so its validation AUC is exactly 0.5 and the best
    epoch is an earlier one: the restored, logged and registered model must be that one.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.params["epochs"] - 1:
            for variable in self.model.weights:
                variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
            self.model.optimizer.learning_rate.assign(0.0)


def read_predictions(text: str) -> dict[str, float]:
    """``predict`` CSV -> path -> probability."""
    rows = list(csv.reader(io.StringIO(text)))
    return {row[0]: float(row[1]) for row in rows[1:]}
