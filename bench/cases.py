"""Timed training cases: the seed's loop, our pipeline, the in-memory ceiling and tracking,
fitted end to end, or interleaved one training step at a time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from deepfake_detect.data.decode_cache import load_split
from deepfake_detect.data.layout import scan_split
from deepfake_detect.data.pipeline import make_dataset
from deepfake_detect.models.cnn import build_cnn_baseline
from deepfake_detect.models.mesonet import build_meso4
from deepfake_detect.training.callbacks import (
    MlflowEpochLogger,
    PreciseBatchNorm,
    ValidationScorer,
)
from deepfake_detect.training.keras_metrics import tracked_metrics

CLASSES = ["Real", "Fake"]
SEED = 42
WARM_STEPS = 3  # untimed steps of each case before the interleaved blocks


@dataclass(frozen=True)
class FitSpec:
    """What every case trains: the seed's cnn_baseline with its optimizer and batch size."""

    data_root: Path
    image_size: int
    batch_size: int
    epochs: int
    cache_dir: Path


class StepTimer(keras.callbacks.Callback):
    """Wall time of every epoch and the interval between consecutive training batches."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[float] = []
        self.steps: list[list[float]] = []
        self._epoch_start = self._last = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self._last = time.perf_counter()
        self.steps.append([])

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        if batch > 0:  # the first interval includes the iterator (re)start
            self.steps[-1].append(now - self._last)
        self._last = now

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(time.perf_counter() - self._epoch_start)


@dataclass(frozen=True)
class Throughput:
    """Steady-state images/s: from the median step (robust) and the median epoch."""

    images_per_s: float
    epoch_images_per_s: float


def compiled_baseline(spec: FitSpec, policy: str, builder=build_cnn_baseline) -> keras.Model:
    """A fresh, seeded cnn_baseline (or ``builder``'s model) under ``policy`` (Adam 0.005, BCE,
    tracked metrics)."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(SEED)
    model = builder(spec.image_size, dropout=0.3)
    model.compile(
        optimizer=keras.optimizers.Adam(0.005),
        loss="binary_crossentropy",
        metrics=tracked_metrics(),
        jit_compile=False,
    )
    return model


def steady_throughput(
    model: keras.Model,
    dataset,
    n_images: int,
    batch_size: int,
    epochs: int,
    extra_callbacks: list | None = None,
) -> Throughput:
    """Throughput over the epochs after the first (warm-up, tracing, cache fill).

    The step median is robust to the multi-second stalls this shared 2-core machine shows now
    and then; the epoch median includes them.
    """
    timer = StepTimer()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer, *(extra_callbacks or [])])
    steps = [step for epoch in timer.steps[1:] for step in epoch]
    per_epoch = n_images / statistics.median(timer.epochs[1:])
    per_step = batch_size / statistics.median(steps) if steps else per_epoch  # 1-batch epochs
    return Throughput(per_step, per_epoch)


def seed_dataset(spec: FitSpec):
    """The seed notebook's input: image_dataset_from_directory, nothing else."""
    dataset = keras.utils.image_dataset_from_directory(
        spec.data_root / "Train",
        label_mode="binary",
        image_size=(spec.image_size,) * 2,
        batch_size=spec.batch_size,
        seed=SEED,
        verbose=False,
    )
    n_images = sum(len(list((spec.data_root / "Train" / c).glob("*.jpg"))) for c in CLASSES)
    return dataset, n_images


def seed_loop(spec: FitSpec) -> Throughput:
    """The seed notebook: image_dataset_from_directory straight into fit, fp32."""
    dataset, n_images = seed_dataset(spec)
    return steady_throughput(
        compiled_baseline(spec, "float32"), dataset, n_images, spec.batch_size, spec.epochs
    )


def our_dataset(spec: FitSpec):
    """Our default input path: decoded disk cache, seeded shuffle, parallel gather, prefetch."""
    files = scan_split(spec.data_root, "Train", CLASSES)
    decoded = load_split(files, spec.image_size, False, spec.cache_dir)
    return make_dataset(decoded, spec.batch_size, shuffle=True, seed=SEED), len(files)


def ours(spec: FitSpec, policy: str, callbacks: list | None = None) -> Throughput:
    """Our trainer's default path (pipeline + auto precision), optionally with callbacks."""
    dataset, n_images = our_dataset(spec)
    return steady_throughput(
        compiled_baseline(spec, policy),
        dataset,
        n_images,
        spec.batch_size,
        spec.epochs,
        callbacks,
    )


def ceiling_dataset(spec: FitSpec):
    """float32 batches already in memory: a training step with no input cost."""
    files = scan_split(spec.data_root, "Train", CLASSES)
    decoded = load_split(files, spec.image_size, False, spec.cache_dir)
    images = tf.constant(np.asarray(decoded.images, dtype=np.float32))
    labels = tf.constant(decoded.labels.astype(np.float32).reshape(-1, 1))
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .batch(spec.batch_size)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )
    return dataset, len(files)


def ceiling(spec: FitSpec, policy: str) -> Throughput:
    """The same model fed from float32 tensors already in memory (no input cost)."""
    dataset, n_images = ceiling_dataset(spec)
    return steady_throughput(
        compiled_baseline(spec, policy), dataset, n_images, spec.batch_size, spec.epochs
    )


def balanced_order(cases: int) -> list[int]:
    """A cyclic order of ``cases`` in which each case follows every other case exactly once
    (an Eulerian circuit of the complete directed graph, Hierholzer): a step's leftover
    background work (its pipeline refilling its prefetch buffer) lands on every other case
    equally often, never on its own next step."""
    unused = {case: [other for other in range(cases) if other != case] for case in range(cases)}
    stack, circuit = [0], []
    while stack:
        if unused[stack[-1]]:
            stack.append(unused[stack[-1]].pop())
        else:
            circuit.append(stack.pop())
    return circuit[::-1][:-1]  # the circuit returns to its start: drop the repeat


def timed_step(model: keras.Model, dataset) -> Callable[[], float]:
    """A function that runs one training step of ``model`` on the next batch of ``dataset``
    (repeated) and returns its seconds: the compiled train function ``fit`` calls, batch
    fetch included, called directly so that cases can take turns step by step."""
    model.fit(dataset.take(1), epochs=1, verbose=0)  # traces the train function
    train_function, iterator = model.train_function, iter(dataset.repeat())

    def step() -> float:
        start = time.perf_counter()
        float(train_function(iterator)["loss"])  # the value: the step has finished
        return time.perf_counter() - start

    for _ in range(WARM_STEPS):
        step()
    return step


def interleaved_steps(spec: FitSpec, policy: str, blocks: int, steps: int) -> dict[str, list]:
    """images/s of ``seed_loop``, ``ours``, ``ceiling`` and ``meso4`` (our path) per block:
    in each block the cases take turns of one training step each, ``steps`` steps per case in
    :func:`balanced_order`, so they run under the same machine load, and each reports its
    block's median step. The steps measure training compute, not input cost: a pipeline
    refills its prefetch buffer during the other cases' steps. The seed's JPEG decoding is the
    largest such refill, so ``ours / seed_loop`` here understates our gain; the fitted cases
    measure the input path end to end."""
    ours_data = our_dataset(spec)[0]  # one pipeline, an iterator of its own per case
    builds = {
        "seed_loop": lambda: (compiled_baseline(spec, "float32"), seed_dataset(spec)[0]),
        "ours": lambda: (compiled_baseline(spec, policy), ours_data),
        "ceiling": lambda: (compiled_baseline(spec, policy), ceiling_dataset(spec)[0]),
        "meso4": lambda: (compiled_baseline(spec, policy, build_meso4), ours_data),
    }
    # each model traced right after it was built, under its own global precision policy
    steppers = [(name, timed_step(*build())) for name, build in builds.items()]
    order = balanced_order(len(steppers))
    speed: dict[str, list[float]] = {name: [] for name in builds}
    for _ in range(blocks):
        seconds: dict[str, list[float]] = {name: [] for name in builds}
        for turn in range(steps * len(steppers)):
            name, step = steppers[order[turn % len(order)]]
            seconds[name].append(step())
        for name, values in seconds.items():
            speed[name].append(spec.batch_size / statistics.median(values))
    return speed


class TimedLogger(MlflowEpochLogger):
    """Our epoch logger, timing itself: the seconds it adds to the training loop."""

    seconds = 0.0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        start = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.seconds += time.perf_counter() - start


def validation_scorer(spec: FitSpec) -> ValidationScorer:
    """The trainer's exact per-epoch validation pass over the bench data's Validation split."""
    files = scan_split(spec.data_root, "Validation", CLASSES)
    decoded = load_split(files, spec.image_size, False, spec.cache_dir)
    dataset = make_dataset(decoded, spec.batch_size, shuffle=False, seed=SEED)
    return ValidationScorer(dataset, decoded.labels)


def tracked(
    spec: FitSpec, policy: str, store: Path, bn_batches: int
) -> tuple[Throughput, dict[str, float]]:
    """``ours`` plus the trainer's callbacks: precise BatchNorm (``bn_batches``), the exact
    validation scorer and the MLflow epoch logger (SQLite). Returns images/s and each
    callback's share of fit time (the scorer's: computing the exact metrics from the
    predictions its pass made)."""
    from deepfake_detect.tracking.store import ensure_experiment, store_client

    uri = f"sqlite:///{store}"
    client = store_client(uri)
    run = client.create_run(ensure_experiment(uri, "bench"))
    scorer = validation_scorer(spec)
    logger = TimedLogger(client, run.info.run_id)
    dataset, _ = our_dataset(spec)
    precise_bn = PreciseBatchNorm(dataset, bn_batches)
    start = time.perf_counter()
    try:
        speed = ours(spec, policy, [precise_bn, scorer, logger])
    finally:
        client.set_terminated(run.info.run_id, "FINISHED")
    seconds = time.perf_counter() - start
    shares = {
        "tracking_overhead": logger.seconds / seconds,
        "exact_val_metrics_overhead": scorer.metric_seconds / seconds,
        # bn_batches of a split with fewer batches (4 in the quick profile): all of them
        "precise_batchnorm_short_epoch": precise_bn.seconds / seconds,
        # one re-estimation batch (a compiled forward pass) against one training step: the
        # bench epoch has a handful of steps, a real one 2,188 (140,002 images / 64)
        "precise_batchnorm_batch_vs_step": (precise_bn.seconds / max(precise_bn.batches_run, 1))
        / (spec.batch_size / speed.images_per_s),
    }
    return speed, shares


def precise_batchnorm_epoch(
    spec: FitSpec, policy: str, steps: int, bn_batches: int
) -> tuple[float, int]:
    """Precise BatchNorm's share of fit time and the epoch's steps, for epochs of at least
    ``steps`` training steps (the bench's Train split repeated; the real split's epoch is
    2,188 steps): the seconds its ``bn_batches`` compiled forward batches take at each
    epoch's end over the whole fit's seconds, the first epoch's tracing of both functions
    included. The tracked case's epochs are one pass over the split (4 steps in the quick
    profile), where 16 requested batches are the whole split: a fifth of the epoch by
    arithmetic."""
    dataset, n_images = our_dataset(spec)
    split_steps = -(-n_images // spec.batch_size)  # the last batch may be partial
    epoch = dataset.repeat(-(-steps // split_steps))  # whole passes over the split
    precise_bn = PreciseBatchNorm(dataset, bn_batches)
    model = compiled_baseline(spec, policy)
    start = time.perf_counter()
    model.fit(epoch, epochs=spec.epochs, verbose=0, callbacks=[precise_bn])
    seconds = time.perf_counter() - start
    return precise_bn.seconds / seconds, int(epoch.cardinality())
