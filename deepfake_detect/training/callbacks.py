"""Keras callbacks: per-epoch MLflow logging and a NaN-loss guard."""

from __future__ import annotations

import math
import time

import keras
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.vocabulary import LR_KEY, SPLIT_METRICS


def epoch_metrics(logs: dict[str, float]) -> dict[str, float]:
    """Map Keras' ``loss``/``val_auc``... logs to ``train_loss``/``val_auc``... keys."""
    metrics: dict[str, float] = {}
    for name in SPLIT_METRICS:
        if name in logs:
            metrics[f"train_{name}"] = float(logs[name])
        if f"val_{name}" in logs:
            metrics[f"val_{name}"] = float(logs[f"val_{name}"])
    return metrics


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (after schedules and ReduceLROnPlateau)."""
    return float(np.asarray(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log the 18 train/val metrics plus ``lr`` in one batched call per epoch (``step=epoch``)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = epoch_metrics(logs or {})
        metrics[LR_KEY] = current_learning_rate(self.model)
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, value, timestamp, epoch) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop at the first NaN/inf batch loss and remember where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.reason: str | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.reason = (
                f"loss became {float(loss)} at epoch {self.epoch} batch {batch}; "
                "lower optimizer.lr or check the data for bad values"
            )
            self.model.stop_training = True

    def raise_if_tripped(self) -> None:
        """Raise NonFiniteLossError after ``fit`` if the guard stopped training."""
        if self.reason:
            raise NonFiniteLossError(self.reason)
