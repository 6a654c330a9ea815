"""Which epoch a run's leaderboard row reports: one rule, fed either by a run's whole history
(the API reader, promotion) or by a few per-run aggregates the database computes itself (the
SQL reader), so both readers give the same rows without the database shipping every epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepfake_detect.leaderboard.records import History
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    EPOCH_KEYS,
    TEST_KEYS,
    higher_is_better,
)

SELECTIONS: tuple[str, ...] = ("best", "last")
MAX_EPOCH = 2**31 - 1  # a logged best_epoch outside 0..MAX_EPOCH is not an epoch: ignored
EPOCH_KEY = EPOCH_KEYS[0]  # train_loss: logged at every finished epoch


@dataclass(frozen=True)
class EpochFacts:
    """Per run, all the rule needs (``None`` where the run logged no such value)."""

    model_epoch: int | None  # the latest logged ``best_epoch``: the epoch of the run's model
    last_epoch: int | None  # the last step of ``train_loss``
    metric_last: int | None  # the last step of the ranking metric
    metric_best: int | None  # its best non-NaN step (the metric's direction, earliest on ties)


def validate_metric(metric: str) -> None:
    """Only tracked metric keys can rank runs."""
    if metric not in EPOCH_KEYS and metric not in TEST_KEYS:
        raise ValueError(
            f"--metric {metric!r} is not a tracked metric; choose one of "
            f"{', '.join(EPOCH_KEYS + TEST_KEYS)}"
        )


def validate_selection(selection: str) -> None:
    """A row reports the ``best`` or the ``last`` epoch."""
    if selection not in SELECTIONS:
        raise ValueError(f"--select {selection!r}; choose one of {', '.join(SELECTIONS)}")


def as_epoch(value: float) -> int | None:
    """A logged ``best_epoch`` as an epoch; None for NaN, negative or absurd values."""
    return int(value) if 0 <= value <= MAX_EPOCH else None  # NaN fails both comparisons


def facts_from_history(history: History, metric: str) -> EpochFacts:
    """The facts of one run from its histories (key -> step -> value)."""
    model = history.get(BEST_EPOCH_METRIC) or {}
    model_epoch = model[max(model)] if model else math.nan
    epochs = history.get(EPOCH_KEY) or {}
    values = history.get(metric) or {}
    finite = {step: value for step, value in values.items() if not math.isnan(value)}
    sign = 1 if higher_is_better(metric) else -1
    return EpochFacts(
        model_epoch=as_epoch(model_epoch),
        last_epoch=max(epochs) if epochs else None,
        metric_last=max(values) if values else None,
        metric_best=min(finite, key=lambda s: (-sign * finite[s], s)) if finite else None,
    )


def pick_epoch(facts: EpochFacts, metric: str, selection: str) -> int | None:
    """The epoch a row reports.

    ``best`` is the run's model, i.e. its logged ``best_epoch`` (picked by its
    ``trainer.monitor``); runs without one (older or failed runs) take the best epoch by
    ``metric`` (earliest on ties, NaN skipped), else their last epoch. ``last`` is the last
    epoch. Test metrics exist at one step only (the epoch whose weights were tested), so
    ranking by one of them reports that epoch.
    """
    if selection == "best" and facts.model_epoch is not None:
        return facts.model_epoch
    if selection == "last":
        steps = [s for s in (facts.last_epoch, facts.metric_last) if s is not None]
        return max(steps) if steps else None
    if metric in TEST_KEYS and facts.metric_last is not None:
        return facts.metric_last
    if facts.metric_best is not None:
        return facts.metric_best
    return facts.last_epoch
