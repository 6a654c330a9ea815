"""Checks of a composed training config that run before TensorFlow loads and before any
MLflow run exists; each error is one line naming the key, the value and what is allowed."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # OmegaConf is imported where a config is checked: ConfigError is not
    from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config value that cannot train; the message names the key and the allowed values."""


class RunFailed(RuntimeError):
    """A run failed for a reason the user can act on (the message says what to change)."""


PRECISIONS: tuple[str, ...] = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multi_worker")
PRUNERS: tuple[str, ...] = ("median",)  # sweep.pruning (null: off)
DEFAULT_PRUNING_WARMUP = 2  # sweep.pruning_warmup when a config lacks it
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 2048  # 140k images at 2048 px would be a 1.8 TB cache
RUN_ID = re.compile(r"[0-9a-f]{32}")

# the epoch metrics a run can select its best epoch by (direction: max, except loss and eer)
MONITORS: tuple[str, ...] = (
    "val_auc",
    "val_acc",
    "val_precision",
    "val_recall",
    "val_ap",
    "val_loss",
    "val_eer",
)


def _integer(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
    return value


def _positive_number(key: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or not math.isfinite(value)
    ):
        raise ConfigError(f"{key}={value!r}: expected a finite number > 0")


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}")


SYNTHETIC_DATASET = "synthetic"  # the one dataset whose root has a default
CACHES: tuple[str, ...] = ("disk", "memory", "none")


def check_data_config(data: DictConfig) -> None:
    """The ``data`` group: a root for every real dataset, two classes, a known cache."""
    from omegaconf import OmegaConf

    if data.name != SYNTHETIC_DATASET and not data.get("root"):
        raise ConfigError(
            f"data.root is not set for data={data.name}: add data.root=/path/to/Data (the "
            "folder with Train/, Validation/ and Test/)"
        )
    classes = list(data.classes) if OmegaConf.is_list(data.classes) else data.classes
    if (
        not isinstance(classes, list)
        or len(classes) != 2
        or len(set(map(str, classes))) != 2
        or not all(isinstance(c, str) and c for c in classes)
    ):
        raise ConfigError(
            f"data.classes={classes!r}: expected exactly two class folder names, e.g. [Fake,Real]"
        )
    if data.positive_class not in classes:
        raise ConfigError(
            f"data.positive_class={data.positive_class!r}: choose one of {', '.join(classes)}"
        )
    for role in ("train", "val"):
        folder = data.splits.get(role)
        if not isinstance(folder, str) or not folder:
            raise ConfigError(
                f"data.splits.{role}={folder!r}: expected the name of a split folder, e.g. "
                f"{'Train' if role == 'train' else 'Validation'}"
            )
    folders = [data.splits.train, data.splits.val] + [t for t in [data.splits.get("test")] if t]
    if len(set(folders)) != len(folders):
        raise ConfigError(
            f"data.splits={OmegaConf.to_container(data.splits)}: train, val and test must be "
            "different folders (scores on training images mean nothing)"
        )
    _choice("data.cache", data.cache, CACHES)
    if data.cache != "none" and (not isinstance(data.cache_dir, str) or not data.cache_dir):
        raise ConfigError(
            f"data.cache_dir={data.cache_dir!r}: expected a folder for the decoded-image cache "
            "(or data.cache=none)"
        )
    cap = data.get("cache_max_gb")
    if cap is not None:
        _positive_number("data.cache_max_gb", cap)
    if not isinstance(data.skip_corrupt, bool):
        raise ConfigError(f"data.skip_corrupt={data.skip_corrupt!r}: use true or false")


def check_training_config(cfg: DictConfig) -> None:
    """Raise ConfigError for values that would waste a run (epochs < 1, unknown monitor, ...)."""
    from omegaconf import OmegaConf

    check_data_config(cfg.data)
    _integer("seed", cfg.seed, 0)
    _positive_number("optimizer.lr", cfg.optimizer.lr)
    parallel = cfg.trainer.parallel_calls
    if parallel is not None:
        _integer("trainer.parallel_calls", parallel, 1)
    _integer("trainer.epochs", cfg.trainer.epochs, 1)
    _integer("trainer.batch_size", cfg.trainer.batch_size, 1)
    monitor = cfg.trainer.monitor
    if monitor not in MONITORS:
        raise ConfigError(f"trainer.monitor={monitor!r}: choose one of {', '.join(MONITORS)}")
    _integer("trainer.precise_batchnorm_batches", cfg.trainer.precise_batchnorm_batches, 0)
    size = _integer("data.image_size", cfg.data.image_size, MIN_IMAGE_SIZE)
    if size > MAX_IMAGE_SIZE:
        raise ConfigError(
            f"data.image_size={size!r}: expected an integer from {MIN_IMAGE_SIZE} to "
            f"{MAX_IMAGE_SIZE}"
        )
    _choice("trainer.precision", cfg.trainer.precision, PRECISIONS)
    _choice("trainer.strategy", cfg.trainer.strategy, STRATEGIES)
    if cfg.trainer.jit_compile not in (True, False, "auto"):
        raise ConfigError(
            f"trainer.jit_compile={cfg.trainer.jit_compile!r}: use true, false or auto"
        )
    dropout = cfg.model.get("dropout")
    if dropout is not None and (
        isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1
    ):
        raise ConfigError(f"model.dropout={dropout!r}: expected a number in [0, 1)")
    patience = cfg.trainer.early_stopping.patience
    if patience is not None:
        _integer("trainer.early_stopping.patience", patience, 1)
    pruning = OmegaConf.select(cfg, "sweep.pruning")
    if pruning is not None:
        _choice("sweep.pruning", pruning, PRUNERS)
    warmup = OmegaConf.select(cfg, "sweep.pruning_warmup", default=DEFAULT_PRUNING_WARMUP)
    _integer("sweep.pruning_warmup", warmup, 1)
    _positive_number("trainer.heartbeat_seconds", cfg.trainer.heartbeat_seconds)
    deterministic = OmegaConf.select(cfg, "trainer.deterministic", default=True)
    if not isinstance(deterministic, bool):
        raise ConfigError(f"trainer.deterministic={deterministic!r}: expected true or false")
    _positive_number("tracking.connect_timeout", cfg.tracking.connect_timeout)
    sampling = OmegaConf.select(cfg, "tracking.system_metrics_seconds")
    if sampling not in (None, 0):
        _positive_number("tracking.system_metrics_seconds", sampling)
    resume = cfg.trainer.resume
    if resume is not None and (
        not isinstance(resume, str) or not (resume == "auto" or RUN_ID.fullmatch(resume))
    ):
        raise ConfigError(
            f"trainer.resume={resume!r}: use a run id (32 hex digits, see `deepfake-detect runs "
            "list`) or auto"
        )
