"""Fit a Keras model from a composed config and log everything to MLflow (imports TensorFlow)."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from hydra.utils import instantiate
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from deepfake_detect.config.validation import DEFAULT_PRUNING_WARMUP, RunFailed
from deepfake_detect.data.pipeline import make_dataset, steps_per_epoch
from deepfake_detect.data.prepare import PreparedData
from deepfake_detect.metrics import plots
from deepfake_detect.metrics.binary import youden_threshold
from deepfake_detect.metrics.report import SplitReport, report_split
from deepfake_detect.models.heads import predict_scores
from deepfake_detect.tracking.lifecycle import deferred_stop
from deepfake_detect.tracking.model_logging import log_keras_model
from deepfake_detect.tracking.registered_models import register_run
from deepfake_detect.tracking.run_state import CheckpointStore
from deepfake_detect.tracking.store import redact
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    CHECKPOINT_EPOCH_TAG,
    CLASS_NAMES_KEY,
    DETERMINISTIC_REASON_TAG,
    DETERMINISTIC_TAG,
    IMAGE_SIZE_KEY,
    POSITIVE_CLASS_KEY,
    THRESHOLD_KEY,
    THRESHOLD_METRIC,
    higher_is_better,
)
from deepfake_detect.training.callbacks import (
    MedianPruner,
    MlflowEpochLogger,
    NonFiniteLossGuard,
    PreciseBatchNorm,
    ValidationScorer,
)
from deepfake_detect.training.checkpoints import (
    Checkpoint,
    RunCheckpoint,
    StopOnSignal,
    read_checkpoint,
    restore_model,
)
from deepfake_detect.training.hardware import (
    Determinism,
    apply_determinism,
    describe_determinism,
    detect_accelerators,
    global_batch_size,
    intra_op_threads,
    make_strategy,
    select_jit_compile,
    select_precision,
)
from deepfake_detect.training.keras_metrics import tracked_metrics
from deepfake_detect.training.pruning import SiblingHistories

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    """What a finished fit reports: the best epoch, whose weights are the model."""

    monitor: str
    best_epoch: int
    objective: float  # the monitored value at the best epoch (the sweep/Optuna objective)
    threshold: float
    val_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    model_uri: str | None
    registered_version: str | None
    pruned_epoch: int | None = None  # set when sweep pruning stopped the trial
    monitor_history: tuple[float, ...] = ()  # trainer.monitor at every epoch


@dataclass(frozen=True)
class Attempt:
    """Which attempt at a run this is: 0 for a new run, n after n resumes (per-attempt
    figures such as ``fit_seconds`` are logged at this step), and where its checkpoints go."""

    number: int
    checkpoints: CheckpointStore

    @property
    def resuming(self) -> bool:
        return self.number > 0


@dataclass(frozen=True)
class RuntimeChoices:
    """The resolved speed settings (logged as params)."""

    precision: str
    jit_compile: bool
    replicas: int
    global_batch_size: int
    deterministic: bool
    intra_op_threads: int  # the pool an op's sums are split over: it changes the numbers


def fresh_keras_state(seed: int) -> None:
    """Start like a new process: no layers or names of an earlier same-process trial, the
    default precision policy (``resolve_runtime`` sets the chosen one), seeded Python, NumPy
    and TensorFlow (the data shuffle gets ``seed`` explicitly)."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
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


def resolve_runtime(
    cfg: DictConfig,
) -> tuple[RuntimeChoices, tf.distribute.Strategy, Determinism]:
    """Apply precision policy, op determinism and strategy; return the choices for logging."""
    accelerators = detect_accelerators()
    precision = select_precision(str(cfg.trainer.precision), accelerators)
    keras.mixed_precision.set_global_policy(precision)
    jit_compile = select_jit_compile(cfg.trainer.jit_compile, accelerators)
    requested = bool(OmegaConf.select(cfg, "trainer.deterministic", default=True))
    apply_determinism(requested)
    determinism = describe_determinism(requested, accelerators, jit_compile)
    strategy = make_strategy(str(cfg.trainer.strategy))
    replicas = int(strategy.num_replicas_in_sync)
    choices = RuntimeChoices(
        precision=precision,
        jit_compile=jit_compile,
        replicas=replicas,
        global_batch_size=global_batch_size(
            int(cfg.trainer.batch_size), replicas, bool(cfg.trainer.scale_batch_with_replicas)
        ),
        deterministic=determinism.deterministic,
        intra_op_threads=intra_op_threads(),
    )
    return choices, strategy, determinism


def determinism_tags(determinism: Determinism) -> list[RunTag]:
    """``deterministic=true|false`` and, when false, ``deterministic_reason``."""
    tags = [RunTag(DETERMINISTIC_TAG, str(determinism.deterministic).lower())]
    if determinism.reason:
        tags.append(RunTag(DETERMINISTIC_REASON_TAG, determinism.reason))
    return tags


def log_runtime(client: MlflowClient, run_id: str, runtime: RuntimeChoices) -> None:
    """The speed settings actually used, as ``runtime.*`` params; a resumed attempt on other
    hardware keeps the first attempt's params and notes its own in ``runtime_changes``."""
    used = {f"runtime.{key}": str(value) for key, value in runtime.__dict__.items()}
    logged = client.get_run(run_id).data.params
    client.log_batch(run_id, params=[Param(k, v) for k, v in used.items() if k not in logged])
    changed = {k: f"{logged[k]} -> {v}" for k, v in used.items() if k in logged and logged[k] != v}
    if changed:
        listed = "; ".join(f"{k}: {v}" for k, v in changed.items())
        client.set_tag(run_id, "runtime_changes", listed)


def best_epoch_keeper(cfg: DictConfig) -> keras.callbacks.EarlyStopping:
    """Keras' EarlyStopping on ``trainer.monitor``: restores the best epoch's weights at the
    end of ``fit`` and stops after ``trainer.early_stopping.patience`` epochs without
    improvement (null: never stops early). Ties keep the earliest epoch, NaN never wins."""
    monitor = str(cfg.trainer.monitor)
    patience = cfg.trainer.early_stopping.patience
    return keras.callbacks.EarlyStopping(
        monitor=monitor,
        mode="max" if higher_is_better(monitor) else "min",
        patience=int(patience) if patience is not None else int(cfg.trainer.epochs),
        restore_best_weights=True,
        verbose=0,
    )


def sweep_pruner(
    cfg: DictConfig, client: MlflowClient, run_id: str, sweep_parent: str | None
) -> MedianPruner | None:
    """The ``sweep.pruning`` callback of a sweep trial; None when off or outside a sweep."""
    pruning = OmegaConf.select(cfg, "sweep.pruning")
    if not pruning:
        return None
    if not sweep_parent:
        log.warning(
            "sweep.pruning=%s applies to sweep trials only; this run is not pruned", pruning
        )
        return None
    if str(cfg.trainer.strategy) == "multi_worker":  # workers would decide apart and hang
        log.warning("sweep.pruning is off with trainer.strategy=multi_worker")
        return None
    monitor = str(cfg.trainer.monitor)
    experiment_id = client.get_run(run_id).info.experiment_id
    siblings = SiblingHistories(client, experiment_id, sweep_parent, run_id, monitor)
    warmup = int(OmegaConf.select(cfg, "sweep.pruning_warmup", default=DEFAULT_PRUNING_WARMUP))
    return MedianPruner(siblings, client, run_id, monitor, warmup)


def log_step_metrics(
    client: MlflowClient, run_id: str, metrics: dict[str, float], step: int
) -> None:
    """``test_auc``, ``val_youden_threshold``... at ``step`` (the best epoch) in one call."""
    stamp = int(time.time() * 1000)
    batch = [Metric(key, value, stamp, step) for key, value in metrics.items()]
    client.log_batch(run_id, metrics=batch)


def write_run_files(
    cfg: DictConfig, model: keras.Model, history: dict[str, list[float]], out: Path
) -> None:
    """Resolved config, model summary and training curves (written into ``out``)."""
    plots.training_curves(history, out / "plots" / "training_curves.png")
    (out / "config").mkdir()
    (out / "config" / "config.yaml").write_text(redact(OmegaConf.to_yaml(cfg, resolve=True)))
    summary: list[str] = []
    model.summary(print_fn=lambda line, **_: summary.append(line))
    (out / "model_summary.txt").write_text("\n".join(summary) + "\n")


def report_best_epoch(
    model: keras.Model,
    data: PreparedData,
    datasets: dict[str, tf.data.Dataset],
    val_prob: np.ndarray,
    out: Path,
) -> tuple[float, SplitReport, SplitReport | None]:
    """Threshold, val and test reports and plots of the restored (best) weights."""
    threshold = youden_threshold(data.val.labels, val_prob)
    plots_dir = out / "plots"
    val = report_split("val", data.val.labels, val_prob, data.class_names, plots_dir, threshold)
    test = None
    if data.test is not None:
        test_prob = predict_scores(model, datasets["test"])
        test = report_split(
            "test", data.test.labels, test_prob, data.class_names, plots_dir, threshold
        )
    return threshold, val, test


def last_logged_epoch(client: MlflowClient, run_id: str) -> int:
    """The highest epoch step in the run's ``train_loss`` history (-1: none)."""
    return max((m.step for m in client.get_metric_history(run_id, "train_loss")), default=-1)


def resume_point(
    client: MlflowClient, run_id: str, attempt: Attempt, model: keras.Model
) -> tuple[Checkpoint | None, int]:
    """Load the newest readable checkpoint into ``model``; return it (None: start at epoch
    0) and the last epoch already in the run's metric history (not logged again)."""
    if not attempt.resuming:
        return None, -1
    logged = last_logged_epoch(client, run_id)
    expected = client.get_run(run_id).data.tags.get(CHECKPOINT_EPOCH_TAG)
    folders = attempt.checkpoints.fetch(run_id, expected)
    problems = []
    for index, folder in enumerate(folders):
        try:
            checkpoint = read_checkpoint(folder)
            restore_model(model, checkpoint)
            return checkpoint, logged
        except RunFailed as error:
            more = "; trying the one before it" if index + 1 < len(folders) else ""
            log.warning("%s%s", error, more)
            problems.append(str(error))
            folder.rename(folder.with_name(f".unreadable-{folder.name}"))  # never again
    if logged < 0 and not folders:
        return None, logged  # stopped before its first epoch ended: start at epoch 0
    found = "; ".join(problems) or f"no checkpoint in {attempt.checkpoints.folder}"
    raise RunFailed(
        f"run {run_id} has epochs 0..{logged} logged but cannot continue ({found}); start a "
        "new run (drop trainer.resume)"
    )


def new_metrics(
    client: MlflowClient, run_id: str, metrics: dict[str, float], step: int, attempt: Attempt
) -> dict[str, float]:
    """``metrics`` without those a stopped earlier attempt already logged at ``step``."""
    if not attempt.resuming:
        return metrics
    return {
        key: value
        for key, value in metrics.items()
        if step not in {m.step for m in client.get_metric_history(run_id, key)}
    }


def train_datasets(
    cfg: DictConfig, data: PreparedData, batch_size: int, epochs: range
) -> dict[str, tf.data.Dataset]:
    """Train (``epochs`` back to back, each in its own seeded order), val and test datasets."""
    splits = {"train": data.train, "val": data.val}
    if data.test is not None:
        splits["test"] = data.test
    return {
        name: make_dataset(
            split,
            batch_size,
            shuffle=name == "train",
            seed=int(cfg.seed),
            parallel_calls=cfg.trainer.parallel_calls,
            epochs=epochs if name == "train" else None,
        )
        for name, split in splits.items()
    }


def fit_and_log(
    cfg: DictConfig,
    data: PreparedData,
    client: MlflowClient,
    run_id: str,
    register_as: str | None,
    attempt: Attempt,
    sweep_parent: str | None = None,
) -> FitResult:
    """Train (from the last checkpoint when resuming), keep the best epoch's weights,
    evaluate them, log everything to ``run_id`` (a sweep trial, child of ``sweep_parent``,
    may be pruned by ``sweep.pruning``)."""
    fresh_keras_state(int(cfg.seed))
    runtime, strategy, determinism = resolve_runtime(cfg)
    log_runtime(client, run_id, runtime)
    client.log_batch(run_id, tags=determinism_tags(determinism))
    with strategy.scope():
        model = build_model(cfg, runtime.jit_compile)
    checkpoint, logged_through = resume_point(client, run_id, attempt, model)
    epochs = int(cfg.trainer.epochs)
    start = checkpoint.next_epoch if checkpoint else 0
    datasets = train_datasets(cfg, data, runtime.global_batch_size, range(start, epochs))
    # BatchNorm statistics always come from the first batches of epoch 0's order, so a
    # resumed run re-estimates them as an uninterrupted one does
    bn_batches = train_datasets(cfg, data, runtime.global_batch_size, range(1))["train"]
    precise_bn = PreciseBatchNorm(bn_batches, int(cfg.trainer.precise_batchnorm_batches))
    scorer = ValidationScorer(datasets["val"], data.val.labels)
    guard = NonFiniteLossGuard()
    keeper = best_epoch_keeper(cfg)
    logger = MlflowEpochLogger(client, run_id, logged_through, len(data.train))
    pruner = sweep_pruner(cfg, client, run_id, sweep_parent)
    tracked = [
        precise_bn,
        scorer,
        guard,
        *build_callbacks(cfg),
        keeper,
        logger,
        *([pruner] if pruner else []),  # it reads what the others wrote and logged
    ]
    saver = RunCheckpoint(
        attempt.checkpoints, client, run_id, tracked, keeper, scorer, checkpoint, guard
    )
    fit_start = time.perf_counter()
    if start < epochs and not (checkpoint and checkpoint.stopped):
        if checkpoint:
            log.info("resuming run %s at epoch %d of %d", run_id, start, epochs)
        with deferred_stop():
            model.fit(
                datasets["train"],  # no validation_data: the scorer makes the validation pass
                epochs=epochs,
                initial_epoch=start,
                steps_per_epoch=steps_per_epoch(data.train, runtime.global_batch_size),
                callbacks=[StopOnSignal(), *tracked, saver],  # saver last: it saves their state
                verbose=int(cfg.trainer.verbose),
                shuffle=False,  # the dataset shuffles itself (per epoch, from the seed)
            )
    else:  # the checkpoint is of the last epoch: only the best weights are left to restore
        saver.restore_callbacks(checkpoint)
        if keeper.best_weights is not None:
            model.set_weights(keeper.best_weights)
    fit_seconds = time.perf_counter() - fit_start
    stamp = int(time.time() * 1000)
    step = attempt.number
    client.log_batch(
        run_id,
        metrics=[
            Metric("fit_seconds", fit_seconds, stamp, step),
            Metric("val_metric_seconds", scorer.metric_seconds, stamp, step),
            Metric("checkpoint_seconds", saver.seconds, stamp, step),
            *([Metric("pruning_seconds", pruner.seconds, stamp, step)] if pruner else []),
        ],
    )
    guard.raise_if_tripped()
    best_epoch = int(keeper.best_epoch)
    client.log_metric(run_id, BEST_EPOCH_METRIC, best_epoch, step=step)  # the latest counts
    with tempfile.TemporaryDirectory() as tmp:
        threshold, val, test = report_best_epoch(
            model, data, datasets, scorer.scores[best_epoch], Path(tmp)
        )
        final = {THRESHOLD_METRIC: threshold}
        if test is not None:
            final.update({f"test_{key}": value for key, value in test.metrics.items()})
        log_step_metrics(
            client, run_id, new_metrics(client, run_id, final, best_epoch, attempt), best_epoch
        )
        write_run_files(cfg, model, logger.history, Path(tmp))
        client.log_artifacts(run_id, tmp)
    model_uri = version = None
    if cfg.tracking.log_model:
        metadata = {
            THRESHOLD_KEY: threshold,
            CLASS_NAMES_KEY: list(data.class_names),
            POSITIVE_CLASS_KEY: data.class_names[1],
            IMAGE_SIZE_KEY: int(cfg.data.image_size),
            "monitor": str(cfg.trainer.monitor),
            BEST_EPOCH_METRIC: best_epoch,
        }
        model_uri = log_keras_model(model, int(cfg.data.image_size), metadata)
        earlier = client.search_model_versions(f"run_id = '{run_id}'") if attempt.resuming else []
        if register_as and not earlier:
            version = register_run(client, register_as, run_id).version
        elif register_as:  # an earlier attempt registered it before it was stopped
            version = earlier[0].version
    return FitResult(
        monitor=str(cfg.trainer.monitor),
        best_epoch=best_epoch,
        objective=float(keeper.best),
        threshold=threshold,
        val_metrics=val.metrics,
        test_metrics=test.metrics if test else None,
        model_uri=model_uri,
        registered_version=str(version) if version is not None else None,
        pruned_epoch=pruner.pruned_epoch if pruner else None,
        monitor_history=tuple(logger.history.get(str(cfg.trainer.monitor), ())),
    )
