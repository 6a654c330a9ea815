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


# the val_auc of sweep job 0, 1, 2 at epochs 0..3 (ScriptedValAuc): with pruning_warmup=2, job 1
# is below job 0's 0.7 at epoch 1 and job 2 below job 0's 0.8 at epoch 2
SCRIPTED_VAL_AUC = ([0.6, 0.7, 0.8, 0.9], [0.5, 0.55, 0.9, 0.95], [0.65, 0.75, 0.78, 0.99])


class ScriptedValAuc(keras.callbacks.Callback):
    """Overwrites the epoch's val_auc with SCRIPTED_VAL_AUC[Hydra job number][epoch], so sweep
    pruning decisions are known in advance (the trainer runs user callbacks after the exact
    validation scorer and before best-epoch selection, logging and pruning)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from hydra.core.hydra_config import HydraConfig

        series = SCRIPTED_VAL_AUC[HydraConfig.get().job.num % len(SCRIPTED_VAL_AUC)]
        if logs is not None:
            logs["val_auc"] = series[epoch]


def read_predictions(text: str) -> dict[str, float]:
    """``predict`` CSV -> path -> probability."""
    rows = list(csv.reader(io.StringIO(text)))
    return {row[0]: float(row[1]) for row in rows[1:]}


class SignalOnce(keras.callbacks.Callback):
    """Sends this process ``signum`` (SIGTERM) after the first batch of ``epoch`` (of sweep job
    ``job`` only, when given), once: the marker file it leaves makes a resumed run (same
    config) train on undisturbed."""

    def __init__(
        self,
        epoch: int,
        marker: str,
        signum: int = 15,
        job: int | None = None,
        at_train_end: bool = False,
    ) -> None:
        super().__init__()
        self.epoch = epoch
        self.marker = marker
        self.signum = signum
        self.job = job
        self.at_train_end = at_train_end  # after the last epoch instead (fit then returns)
        self._current = -1

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current = epoch

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.at_train_end:
            self._signal()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._current == self.epoch and not self.at_train_end:
            self._signal()

    def _signal(self) -> None:
        import os

        if self.job is not None:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.get().job.num != self.job:
                return
        if not Path(self.marker).exists():
            Path(self.marker).touch()
            os.kill(os.getpid(), self.signum)


class PauseOnce(keras.callbacks.Callback):
    """In sweep job ``job`` at the first batch of ``epoch``, on the first attempt only: writes
    ``waiting <SLURM job id>`` to ``marker`` and waits (up to 5 min) until the test writes
    ``go`` there, so the test can act on a job known to be mid-training (``scontrol requeue``).
    A stop signal that arrives meanwhile is acted on once the wait ends."""

    def __init__(self, epoch: int, marker: str, job: int = 0) -> None:
        super().__init__()
        self.epoch, self.marker, self.job = epoch, Path(marker), job
        self._current = -1

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        import os
        import time

        from hydra.core.hydra_config import HydraConfig

        if self._current != self.epoch or HydraConfig.get().job.num != self.job:
            return
        if self.marker.exists():
            return
        job = f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
        self.marker.write_text(f"waiting {job}")
        for _ in range(3000):
            if self.marker.read_text() == "go":
                return
            time.sleep(0.1)
