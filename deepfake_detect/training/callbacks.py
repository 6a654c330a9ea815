"""Keras callbacks: precise BatchNorm, exact validation scores, per-epoch MLflow logging, a
NaN-loss guard and sweep trial pruning."""

from __future__ import annotations

import logging
import math
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from deepfake_detect.config.validation import RunFailed
from deepfake_detect.metrics.binary import binary_metrics
from deepfake_detect.models.heads import predict_scores
from deepfake_detect.tracking.vocabulary import (
    IMAGES_PER_SECOND_KEY,
    LR_KEY,
    PRUNED_EPOCH_TAG,
    PRUNED_TAG,
    RANKING_METRICS,
    SPLIT_METRICS,
    higher_is_better,
)
from deepfake_detect.training.pruning import SiblingHistories, is_worse_than_median

log = logging.getLogger(__name__)


def epoch_metrics(logs: dict[str, float]) -> dict[str, float]:
    """Map Keras' ``loss``/``val_auc``... logs to ``train_loss``/``val_auc``... keys (the
    validation scorer adds ``val_eer`` and ``val_ap``; training has neither)."""
    metrics: dict[str, float] = {}
    for name in (*SPLIT_METRICS, *RANKING_METRICS):
        if name in logs:
            metrics[f"train_{name}"] = float(logs[name])
        if f"val_{name}" in logs:
            metrics[f"val_{name}"] = float(logs[f"val_{name}"])
    return metrics


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (after schedules and ReduceLROnPlateau)."""
    return float(np.asarray(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))


def all_layers(model: keras.Model):
    """Every layer, nested models (an EfficientNet backbone) included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recompute the BatchNorm moving statistics for the epoch's final weights.

    Keras keeps an exponential moving average of batch statistics seen while the weights were
    still changing; after few steps (a small or short run) it describes weights that no longer
    exist, and inference-mode scores all shift to one side (accuracy 0.5 at AUC 0.99). This
    callback ("precise BN", Wu & Johnson 2021) runs ``batches`` training batches forward at the
    end of each epoch, with dropout off, and sets every BatchNorm layer's moving mean and
    variance to their average over those batches. Weights are untouched. Put it before the
    validation scorer.

    The pass is one compiled ``tf.function`` (traced once per model): with momentum 0 each
    training-mode call leaves a layer's moving statistics equal to that batch's, which the graph
    adds into per-layer sums; the averages are assigned after the loop.
    """

    def __init__(self, dataset: tf.data.Dataset, batches: int) -> None:
        super().__init__()
        self.dataset = dataset
        self.batches = batches
        self.seconds = 0.0  # time spent re-estimating (for the benchmark)
        self.batches_run = 0  # forward batches those seconds paid for (for the benchmark)
        self._compiled: tuple[object, object, list] | None = None  # (model, function, sums)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        start = time.perf_counter()
        try:
            self._reestimate()
        finally:
            self.seconds += time.perf_counter() - start

    def _reestimate(self) -> None:
        layers = list(all_layers(self.model))
        norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
        if not norms or self.batches < 1:
            return
        drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
        momenta, rates = [layer.momentum for layer in norms], [layer.rate for layer in drops]
        for layer in drops:
            layer.rate = 0.0
        for layer in norms:  # moving statistics = the last batch's, summed by the graph
            layer.momentum = 0.0
        try:
            function, sums = self._batch_statistics_sums(norms)
            count = int(function())
            self.batches_run += count
            if count:
                for layer, (mean_sum, variance_sum) in zip(norms, sums, strict=True):
                    layer.moving_mean.assign(mean_sum / count)
                    layer.moving_variance.assign(variance_sum / count)
        finally:
            for layer, momentum in zip(norms, momenta, strict=True):
                layer.momentum = momentum
            for layer, rate in zip(drops, rates, strict=True):
                layer.rate = rate

    def _batch_statistics_sums(self, norms: list) -> tuple:
        """The compiled pass over ``batches`` batches and the sums it fills (zeroed each call)."""
        if self._compiled is not None and self._compiled[0] is self.model:
            return self._compiled[1], self._compiled[2]
        model, dataset, batches = self.model, self.dataset, self.batches
        sums = [
            (
                tf.Variable(tf.zeros(layer.moving_mean.shape), trainable=False),
                tf.Variable(tf.zeros(layer.moving_variance.shape), trainable=False),
            )
            for layer in norms
        ]

        @tf.function
        def accumulate() -> tf.Tensor:
            for mean_sum, variance_sum in sums:
                mean_sum.assign(tf.zeros_like(mean_sum))
                variance_sum.assign(tf.zeros_like(variance_sum))
            count = tf.constant(0)
            for images, _ in dataset.take(batches):
                model(images, training=True)
                for layer, (mean_sum, variance_sum) in zip(norms, sums, strict=True):
                    mean_sum.assign_add(tf.cast(layer.moving_mean.value, tf.float32))
                    variance_sum.assign_add(tf.cast(layer.moving_variance.value, tf.float32))
                count += 1
            return count

        self._compiled = (self.model, accumulate, sums)
        return accumulate, sums


class ValidationScorer(keras.callbacks.Callback):
    """The epoch's validation pass: one ``predict`` over the split, exact metrics from it.

    ``fit`` gets no ``validation_data``: this callback makes the one pass over the validation
    split instead and writes ``val_loss``, ``val_acc``, ... ``val_auc`` (exact, not Keras'
    200-bucket approximation) into the epoch logs, so every later callback (learning-rate
    schedule, best-epoch selection, MLflow logging) sees the same numbers. The scores of
    every epoch are kept (4 bytes an image an epoch) so the best epoch needs no second pass.
    It must come before every callback that reads ``val_*`` (after :class:`PreciseBatchNorm`).
    """

    def __init__(self, dataset: tf.data.Dataset, labels: np.ndarray) -> None:
        super().__init__()
        self.dataset = dataset
        self.labels = np.asarray(labels)
        self.scores: dict[int, np.ndarray] = {}
        self.metric_seconds = 0.0  # time spent on the exact metrics (not the forward pass)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        prob = predict_scores(self.model, self.dataset)
        start = time.perf_counter()
        metrics = binary_metrics(self.labels, prob)
        self.metric_seconds += time.perf_counter() - start
        self.scores[epoch] = prob
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in metrics.items()})


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log the train/val metrics, ``lr`` and ``images_per_second`` (training images over the
    epoch's training steps, validation excluded) in one batched call per epoch (``step=epoch``).

    Epochs up to ``logged_through`` are already in the run (a resumed run that was stopped
    between logging an epoch and saving its checkpoint trains that epoch again): they are kept
    in ``history`` but not logged twice.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        logged_through: int = -1,
        train_images: int = 0,
    ) -> None:
        super().__init__()
        self.client = client
        self.run_id = run_id
        self._logged_through = logged_through  # private: not restored from a checkpoint
        self._train_images = train_images
        self._epoch_start = self._last_step_end = 0.0
        self.history: dict[str, list[float]] = {}

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self._last_step_end = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._last_step_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = epoch_metrics(logs or {})
        metrics[LR_KEY] = current_learning_rate(self.model)
        seconds = self._last_step_end - self._epoch_start
        if self._train_images and seconds > 0:
            metrics[IMAGES_PER_SECOND_KEY] = self._train_images / seconds
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        if epoch <= self._logged_through:
            return
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, value, timestamp, epoch) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)


class NonFiniteLossError(RunFailed):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop at the first NaN/inf training or validation loss and remember where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.reason: str | None = None

    def _trip(self, reason: str) -> None:
        self.reason = f"{reason}; lower optimizer.lr or check the data for bad values"
        self.model.stop_training = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._trip(f"loss became {float(loss)} at epoch {self.epoch} batch {batch}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("val_loss")
        if self.reason is None and loss is not None and not math.isfinite(float(loss)):
            self._trip(f"validation loss became {float(loss)} at epoch {epoch}")

    def raise_if_tripped(self) -> None:
        """Raise NonFiniteLossError after ``fit`` if the guard stopped training."""
        if self.reason:
            raise NonFiniteLossError(self.reason)


class MedianPruner(keras.callbacks.Callback):
    """Stop a sweep trial that is worse than its finished siblings' median
    (:mod:`deepfake_detect.training.pruning`).

    Put it after every callback that writes or logs the epoch's metrics.
    """

    def __init__(
        self,
        siblings: SiblingHistories,
        client: MlflowClient,
        run_id: str,
        monitor: str,
        warmup: int,
    ) -> None:
        super().__init__()
        self.siblings = siblings
        self.client = client
        self.run_id = run_id
        self.monitor = monitor
        self.higher = higher_is_better(monitor)
        self.warmup = warmup
        self.history: list[float] = []  # the monitored value of every epoch
        self.pruned_epoch: int | None = None
        self.seconds = 0.0  # time spent reading siblings and deciding

    def best_so_far(self) -> float:
        """The best monitored value so far (NaN when there is none)."""
        finite = [value for value in self.history if not math.isnan(value)]
        if not finite:
            return math.nan
        return max(finite) if self.higher else min(finite)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.history.append(float((logs or {}).get(self.monitor, math.nan)))
        last = epoch + 1 >= self.params.get("epochs", math.inf)  # nothing left to save
        if epoch + 1 < self.warmup or last or getattr(self.model, "stop_training", False):
            return
        start = time.perf_counter()
        try:
            self._prune_if_worse(epoch)
        except Exception as error:  # pruning only saves time: a store hiccup must not fail
            log.warning("sweep pruning skipped at epoch %d: %s", epoch, error)
        finally:
            self.seconds += time.perf_counter() - start

    def _prune_if_worse(self, epoch: int) -> None:
        """Stop training and tag the run when its best is worse than the siblings' median."""
        self.siblings.refresh()
        siblings = [value for value in self.siblings.values_at(epoch) if math.isfinite(value)]
        if not is_worse_than_median(self.best_so_far(), siblings, self.higher):
            return
        self.pruned_epoch = epoch
        self.client.log_batch(
            self.run_id, tags=[RunTag(PRUNED_TAG, "true"), RunTag(PRUNED_EPOCH_TAG, str(epoch))]
        )
        log.info(
            "pruned at epoch %d: best %s %.4f is worse than the median %.4f of %d finished "
            "sibling(s)",
            epoch,
            self.monitor,
            self.best_so_far(),
            statistics.median(siblings),
            len(siblings),
        )
        self.model.stop_training = True
