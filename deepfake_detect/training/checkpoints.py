"""Resumable checkpoints of a training run, and a graceful stop on SIGTERM/SIGINT.

After every finished epoch :class:`RunCheckpoint` writes one folder (Keras'
``BackupAndRestore`` idea, made complete): the model and optimizer state, the dropout seed
states, the epoch, the best epoch's weights and validation scores, and the JSON state of every
callback (early stopping, ReduceLROnPlateau, the MLflow logger's history, the pruner). The
data order of epoch ``e`` depends only on ``(seed, e)`` (:mod:`deepfake_detect.data.pipeline`),
so a resumed run trains the epochs it had left as an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from deepfake_detect.config.validation import RunFailed
from deepfake_detect.tracking.health import require_free_space
from deepfake_detect.tracking.lifecycle import raise_if_stop_requested
from deepfake_detect.tracking.run_state import CheckpointStore
from deepfake_detect.tracking.vocabulary import CHECKPOINT_EPOCH_TAG, HEARTBEAT_TAG, LAST_EPOCH_TAG
from deepfake_detect.training.callbacks import NonFiniteLossGuard, ValidationScorer

STATE_FILE = "state.json"  # written last: a folder with it is complete
WEIGHTS_FILE = "model.weights.h5"  # model and optimizer variables
SEEDS_FILE = "seeds.npz"  # dropout seed generator states (not in Keras' weights file)
BEST_WEIGHTS_FILE = "best_weights.npz"  # EarlyStopping's best weights so far
BEST_SCORES_FILE = "best_val_scores.npy"  # the best epoch's validation scores (threshold)
_NOT_STATE = frozenset({"model", "params", "validation_data"})


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder: the last finished ``epoch`` and the callbacks' state."""

    folder: Path
    epoch: int
    stopped: bool  # a callback (early stopping, pruning) had ended training
    callbacks: dict[str, dict]
    best_weights: list[np.ndarray] | None
    best_scores: np.ndarray | None

    @property
    def next_epoch(self) -> int:
        return self.epoch + 1


def read_checkpoint(folder: Path) -> Checkpoint:
    """Load ``folder``'s state (RunFailed naming the folder when it is unreadable)."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        best_weights = best_scores = None
        if (folder / BEST_WEIGHTS_FILE).is_file():
            arrays = np.load(folder / BEST_WEIGHTS_FILE)
            best_weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        if (folder / BEST_SCORES_FILE).is_file():
            best_scores = np.load(folder / BEST_SCORES_FILE)
        return Checkpoint(
            folder,
            int(state["epoch"]),
            bool(state["stopped"]),
            state["callbacks"],
            best_weights,
            best_scores,
        )
    except (OSError, ValueError, KeyError, EOFError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise RunFailed(f"checkpoint {folder} is unreadable ({first})") from error


def seed_variables(model: keras.Model) -> list:
    """The dropout/augmentation seed generator states (Keras does not save them)."""
    return [v for v in model.variables if "seed_generator_state" in v.path]


def restore_model(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Load weights, optimizer state and seed states into a built, compiled model
    (RunFailed naming the folder when they cannot be read)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(checkpoint.folder / WEIGHTS_FILE)
        seeds = np.load(checkpoint.folder / SEEDS_FILE)
        for index, variable in enumerate(seed_variables(model)):
            variable.assign(seeds[f"arr_{index}"])
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise RunFailed(f"checkpoint {checkpoint.folder} is unreadable ({first})") from error


def variable_bytes(variables: list) -> int:
    """Bytes the variables take, from their shapes (no copy of the weights)."""
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)


def callback_state(callback: keras.callbacks.Callback) -> dict:
    """The public attributes of ``callback`` that JSON can hold (counters, bests, histories)."""
    state = {}
    for key, value in vars(callback).items():
        if key.startswith("_") or key in _NOT_STATE:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        state[key] = value
    return state


def _state_key(index: int, callback: keras.callbacks.Callback) -> str:
    return f"{index}:{type(callback).__name__}"


class RunCheckpoint(keras.callbacks.Callback):
    """Write a resumable checkpoint after every epoch; restore the callbacks' state when the
    run resumes. Must be the last callback (it saves what the others updated, and restores
    after their ``on_train_begin`` reset them)."""

    def __init__(
        self,
        store: CheckpointStore,
        client: MlflowClient,
        run_id: str,
        tracked: list[keras.callbacks.Callback],
        keeper: keras.callbacks.EarlyStopping,
        scorer: ValidationScorer,
        resume_from: Checkpoint | None = None,
        guard: NonFiniteLossGuard | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.client = client
        self.run_id = run_id
        self.tracked = tracked
        self.keeper = keeper
        self.scorer = scorer
        self.resume_from = resume_from
        self.guard = guard  # an epoch that made the loss NaN is not worth resuming from
        self.seconds = 0.0  # time spent writing checkpoints

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.resume_from is not None:
            self.restore_callbacks(self.resume_from)

    def restore_callbacks(self, checkpoint: Checkpoint) -> None:
        """Put every tracked callback back in the state it had after ``checkpoint.epoch``."""
        for index, callback in enumerate(self.tracked):
            for key, value in checkpoint.callbacks.get(_state_key(index, callback), {}).items():
                setattr(callback, key, value)
        if checkpoint.best_weights is not None:
            self.keeper.best_weights = checkpoint.best_weights
        if checkpoint.best_scores is not None:
            self.scorer.scores = {int(self.keeper.best_epoch): checkpoint.best_scores}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.guard is not None and self.guard.reason:
            return  # the run fails; the previous checkpoint (good weights) stays the newest
        start = time.perf_counter()
        self.save(epoch)
        self.seconds += time.perf_counter() - start
        raise_if_stop_requested()  # a signal during the epoch's end: saved, now stop

    def save(self, epoch: int) -> Path:
        """Write epoch ``epoch``'s checkpoint (complete or not at all) and tag the run."""
        staged = self.store.staging(epoch)
        weights = variable_bytes(self.model.variables)
        optimizer = variable_bytes(getattr(self.model.optimizer, "variables", []))
        require_free_space(staged, 2 * weights + optimizer + 2**20, "the checkpoint")
        self.model.save_weights(staged / WEIGHTS_FILE)
        np.savez(staged / SEEDS_FILE, *[v.numpy() for v in seed_variables(self.model)])
        if self.keeper.best_weights is not None:
            np.savez(staged / BEST_WEIGHTS_FILE, *self.keeper.best_weights)
        scores = self.scorer.scores.get(int(self.keeper.best_epoch))
        if scores is not None:
            np.save(staged / BEST_SCORES_FILE, scores)
        self.scorer.scores = {k: v for k, v in self.scorer.scores.items() if v is scores}
        state = {
            "epoch": epoch,
            "stopped": bool(getattr(self.model, "stop_training", False)),
            "callbacks": {
                _state_key(i, callback): callback_state(callback)
                for i, callback in enumerate(self.tracked)
            },
        }
        (staged / STATE_FILE).write_text(json.dumps(state))
        final = self.store.commit(staged, epoch, self.client, self.run_id)
        self.client.log_batch(
            self.run_id,
            tags=[
                RunTag(CHECKPOINT_EPOCH_TAG, str(epoch)),
                RunTag(LAST_EPOCH_TAG, str(epoch)),
                RunTag(HEARTBEAT_TAG, str(int(time.time()))),
            ],
        )
        return final


class StopOnSignal(keras.callbacks.Callback):
    """After each training batch, a pending SIGTERM/SIGINT stops training: the unfinished
    epoch is dropped and the last finished epoch's checkpoint is what a resume continues."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stop_requested()
