"""The metric vocabulary shared by the trainer, the leaderboard and evaluation.

Keras metric names are set explicitly (`name=`) so Keras never suffixes them (`auc_1`).
"""

from __future__ import annotations

# Per-split metrics in the seed notebook's column order.
SPLIT_METRICS: tuple[str, ...] = (
    "loss",
    "acc",
    "precision",
    "recall",
    "auc",
    "fn",
    "fp",
    "tn",
    "tp",
)
COUNT_METRICS: frozenset[str] = frozenset({"fn", "fp", "tn", "tp"})
SPLITS: tuple[str, ...] = ("train", "val", "test")


def split_keys(split: str) -> list[str]:
    """MLflow metric keys of one split, e.g. ``val_auc``."""
    return [f"{split}_{name}" for name in SPLIT_METRICS]


EPOCH_KEYS: list[str] = split_keys("train") + split_keys("val")
TEST_KEYS: list[str] = split_keys("test")
LR_KEY = "lr"


def higher_is_better(metric: str) -> bool:
    """True for metrics to maximise (auc, acc, precision, recall, tp, tn)."""
    base = metric.split("_", 1)[-1]
    return base not in {"loss", "fn", "fp"}
