"""Fit a Keras model from a composed config and log everything to MLflow (imports TensorFlow)."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf
from hydra.utils import instantiate
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from deepfake_detect.data.pipeline import make_dataset
from deepfake_detect.data.prepare import PreparedData
from deepfake_detect.metrics import plots
from deepfake_detect.metrics.binary import binary_metrics, youden_threshold
from deepfake_detect.tracking.model_logging import log_keras_model
from deepfake_detect.tracking.registered_models import version_tags
from deepfake_detect.tracking.vocabulary import THRESHOLD_METRIC
from deepfake_detect.training.callbacks import MlflowEpochLogger, NonFiniteLossGuard
from deepfake_detect.training.hardware import (
    detect_accelerators,
    global_batch_size,
    make_strategy,
    select_jit_compile,
    select_precision,
)
from deepfake_detect.training.keras_metrics import tracked_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    """What a finished fit reports back (the sweep objective is ``val_auc``)."""

    history: dict[str, list[float]]
    val_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    model_uri: str | None

    @property
    def objective(self) -> float:
        """Best validation AUC over the epochs."""
        values = self.history.get("val_auc", [])
        return max(values) if values else math.nan


@dataclass(frozen=True)
class RuntimeChoices:
    """The resolved speed settings (logged as params)."""

    precision: str
    jit_compile: bool
    replicas: int
    global_batch_size: int


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (the data shuffle gets ``seed`` explicitly)."""
    keras.utils.set_random_seed(seed)


def build_model(cfg: DictConfig, jit_compile: bool) -> keras.Model:
    """Instantiate model and optimizer from config and compile with the tracked metrics."""
    model = instantiate(cfg.model, image_size=int(cfg.data.image_size))
    model.compile(
        optimizer=instantiate(cfg.optimizer),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=tracked_metrics(),
        jit_compile=jit_compile,
    )
    return model


def build_callbacks(cfg: DictConfig) -> list[keras.callbacks.Callback]:
    """The configured Keras callbacks (entries set to null are skipped)."""
    return [
        instantiate(spec) for spec in (cfg.trainer.callbacks or {}).values() if spec is not None
    ]


def predict_probabilities(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """Probabilities of the positive class, float32 (N,)."""
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float32).ravel()


def resolve_runtime(cfg: DictConfig) -> tuple[RuntimeChoices, tf.distribute.Strategy]:
    """Apply precision policy and strategy; return the choices for logging."""
    accelerators = detect_accelerators()
    precision = select_precision(str(cfg.trainer.precision), accelerators)
    keras.mixed_precision.set_global_policy(precision)
    strategy = make_strategy(str(cfg.trainer.strategy))
    replicas = int(strategy.num_replicas_in_sync)
    choices = RuntimeChoices(
        precision=precision,
        jit_compile=select_jit_compile(cfg.trainer.jit_compile, accelerators),
        replicas=replicas,
        global_batch_size=global_batch_size(
            int(cfg.trainer.batch_size), replicas, bool(cfg.trainer.scale_batch_with_replicas)
        ),
    )
    return choices, strategy


def log_runtime(client: MlflowClient, run_id: str, runtime: RuntimeChoices) -> None:
    """The speed settings actually used, as ``runtime.*`` params."""
    params = [Param(f"runtime.{key}", str(value)) for key, value in runtime.__dict__.items()]
    client.log_batch(run_id, params=params)


def evaluate_and_report(
    model: keras.Model,
    data: PreparedData,
    datasets: dict[str, tf.data.Dataset],
    client: MlflowClient,
    run_id: str,
    step: int,
    out: Path,
) -> dict[str, dict[str, float]]:
    """Validation threshold, test metrics and per-split plots (written into ``out``)."""
    splits = {"val": data.val} | ({"test": data.test} if data.test is not None else {})
    results = {}
    for name, split in splits.items():
        prob = predict_probabilities(model, datasets[name])
        results[name] = binary_metrics(split.labels, prob)
        if name == "val":
            client.log_metric(
                run_id, THRESHOLD_METRIC, youden_threshold(split.labels, prob), step=step
            )
        else:
            stamp = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[
                    Metric(f"{name}_{key}", value, stamp, step)
                    for key, value in results[name].items()
                ],
            )
        plots.split_report(name, split.labels, prob, results[name], data.class_names, out / "plots")
    return results


def write_run_files(
    cfg: DictConfig, model: keras.Model, history: dict[str, list[float]], out: Path
) -> None:
    """Resolved config, model summary and training curves (written into ``out``)."""
    plots.training_curves(history, out / "plots" / "training_curves.png")
    (out / "config").mkdir()
    (out / "config" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    summary: list[str] = []
    model.summary(print_fn=lambda line, **_: summary.append(line))
    (out / "model_summary.txt").write_text("\n".join(summary) + "\n")


def fit_and_log(
    cfg: DictConfig, data: PreparedData, client: MlflowClient, run_id: str, register_as: str | None
) -> FitResult:
    """Train, evaluate val/test, log params, metrics, plots and the model to ``run_id``."""
    seed = int(cfg.seed)
    seed_everything(seed)
    runtime, strategy = resolve_runtime(cfg)
    log_runtime(client, run_id, runtime)
    with strategy.scope():
        model = build_model(cfg, runtime.jit_compile)
    splits = {"train": data.train, "val": data.val}
    if data.test is not None:
        splits["test"] = data.test
    datasets = {
        name: make_dataset(
            split,
            runtime.global_batch_size,
            shuffle=name == "train",
            seed=seed,
            parallel_calls=cfg.trainer.parallel_calls,
        )
        for name, split in splits.items()
    }
    logger = MlflowEpochLogger(client, run_id)
    guard = NonFiniteLossGuard()
    fit_start = time.perf_counter()
    model.fit(
        datasets["train"],
        validation_data=datasets["val"],
        epochs=int(cfg.trainer.epochs),
        callbacks=[guard, *build_callbacks(cfg), logger],
        verbose=int(cfg.trainer.verbose),
        shuffle=False,  # the dataset shuffles itself (seeded, per epoch)
    )
    client.log_metric(run_id, "fit_seconds", time.perf_counter() - fit_start)
    guard.raise_if_tripped()
    last_step = max(len(logger.history.get("train_loss", [])) - 1, 0)
    with tempfile.TemporaryDirectory() as tmp:
        results = evaluate_and_report(model, data, datasets, client, run_id, last_step, Path(tmp))
        write_run_files(cfg, model, logger.history, Path(tmp))
        client.log_artifacts(run_id, tmp)
    model_uri = None
    if cfg.tracking.log_model:
        model_uri = log_keras_model(model, int(cfg.data.image_size))
        if register_as:
            mlflow.register_model(model_uri, register_as, tags=version_tags(client, run_id))
    return FitResult(logger.history, results["val"], results.get("test"), model_uri)
