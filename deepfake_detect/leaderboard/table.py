"""Build the leaderboard table from run records (pure: no I/O, no MLflow calls)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepfake_detect.leaderboard.rates import rates_from_counts
from deepfake_detect.leaderboard.records import SWEPT_PARAMS, RunRecord
from deepfake_detect.leaderboard.selection import SELECTIONS, facts_from_history, pick_epoch
from deepfake_detect.tracking.vocabulary import (
    COUNT_METRICS,
    EPOCH_KEYS,
    MONITOR_PARAM,
    SPLITS,
    TEST_KEYS,
    higher_is_better,
)

ID_COLUMNS: tuple[str, ...] = ("epoch", "run_id", "experiment", "sweep", "pruned")
TOLERANCE = 1e-3
# params that always differ and say nothing about the model
_NOISY_PARAMS = ("runtime.", "hydra.", "paths.", "tracking.")


@dataclass(frozen=True)
class Leaderboard:
    """The table plus the consistency warnings found while building it."""

    table: pd.DataFrame
    warnings: list[str]
    metric: str


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


def select_step(record: RunRecord, metric: str, selection: str) -> int | None:
    """The epoch a run's row reports (see :func:`selection.pick_epoch`)."""
    if record.preselected:
        return record.epoch
    return pick_epoch(facts_from_history(record.history, metric), metric, selection)


def build_columns(
    records: Sequence[RunRecord], metric: str, selection: str, params: Sequence[str]
) -> dict[str, list[object]]:
    """The table column by column: every metric from each run's row epoch (test values only
    where that epoch's weights were tested, i.e. the run's model), ids and ``params``."""
    steps = [select_step(record, metric, selection) for record in records]
    at_step = [
        record.values
        if record.preselected
        else {key: values[step] for key, values in record.history.items() if step in values}
        for record, step in zip(records, steps, strict=True)
    ]
    columns: dict[str, list[object]] = {"model": [record.name for record in records]}
    for key in (*EPOCH_KEYS, *TEST_KEYS):
        columns[key] = [values.get(key, math.nan) for values in at_step]
    columns.update(
        epoch=steps,
        run_id=[record.run_id for record in records],
        experiment=[record.experiment for record in records],
        sweep=[record.parent_run_id for record in records],
        pruned=[record.pruned for record in records],
    )
    for key in params:
        columns[key] = [record.params.get(key, "") for record in records]
    return columns


def differing_params(records: Sequence[RunRecord]) -> list[str]:
    """Params (beyond the swept two) whose values differ between the exported runs."""
    keys = sorted({key for record in records for key in record.params})
    differing = []
    for key in keys:
        if key in SWEPT_PARAMS or key.startswith(_NOISY_PARAMS):
            continue
        if len({record.params.get(key) for record in records}) > 1:
            differing.append(key)
    return differing


def unique_names(names: Sequence[str], run_ids: Sequence[str]) -> list[str]:
    """Run names, with a short run-id suffix only where two runs share a name."""
    counts = Counter(names)
    return [
        f"{name}-{run_id[:7]}" if counts[name] > 1 else name
        for name, run_id in zip(names, run_ids, strict=True)
    ]


def consistency_warnings(table: pd.DataFrame) -> list[str]:
    """acc/precision/recall must agree with the TP/FP/TN/FN of the same split and row
    (checked column-wise: a 16k-row table is checked in milliseconds)."""
    found: list[tuple[int, int, str]] = []  # (row, split, message): reported in row order
    models, run_ids = table["model"].to_numpy(), table["run_id"].to_numpy()
    for split_index, split in enumerate(SPLITS):
        columns = {
            name: f"{split}_{name}"
            for name in ("acc", "precision", "recall", "tp", "fp", "tn", "fn")
        }
        if table.empty or not set(columns.values()) <= set(table.columns):
            continue
        values = {
            name: pd.to_numeric(table[c]).astype(float).to_numpy() for name, c in columns.items()
        }
        complete = ~np.isnan(np.stack(list(values.values()))).any(axis=0)
        expected = rates_from_counts(values["tp"], values["fp"], values["tn"], values["fn"])
        broken = {
            name: complete & ~np.isnan(want) & (np.abs(values[name] - want) > TOLERANCE)
            for name, want in expected.items()
        }
        for position in np.flatnonzero(np.logical_or.reduce(list(broken.values()))):
            details = "; ".join(
                f"{split}_{name} {values[name][position]:.4f} != {want[position]:.4f}"
                for name, want in expected.items()
                if broken[name][position]
            )
            found.append(
                (
                    int(position),
                    split_index,
                    f"run {models[position]} ({run_ids[position]}): {split} counts disagree with "
                    f"its rates ({details}); are TP/FP/TN/FN in the wrong columns?",
                )
            )
    return [message for _, _, message in sorted(found)]


def build_leaderboard(
    records: Sequence[RunRecord], metric: str = "val_auc", selection: str = "best"
) -> Leaderboard:
    """Rows sorted best first by ``metric``; counts as integers; warnings for bad rows."""
    validate_metric(metric)
    validate_selection(selection)
    extra = differing_params(records)
    param_columns = [*SWEPT_PARAMS, *extra]
    columns = ["model", *EPOCH_KEYS, *TEST_KEYS, *ID_COLUMNS, *param_columns]
    table = pd.DataFrame(
        build_columns(records, metric, selection, param_columns), columns=columns
    ).astype({key: float for key in (*EPOCH_KEYS, *TEST_KEYS)})
    if not table.empty:
        ascending = not higher_is_better(metric)
        table = table.sort_values(
            [metric, "model", "run_id"],
            ascending=[ascending, True, True],
            na_position="last",
            kind="mergesort",
        )
        table["model"] = unique_names(list(table["model"]), list(table["run_id"]))
    for key in [*EPOCH_KEYS, *TEST_KEYS]:
        if key.rsplit("_", 1)[-1] in COUNT_METRICS:
            counts = pd.to_numeric(table[key]).astype(float)
            counts = counts.where(np.isfinite(counts) & (counts.abs() < 2**53))  # else blank
            table[key] = counts.round().astype("Int64")
    table["epoch"] = pd.to_numeric(table["epoch"]).astype("Int64")
    table = table.reset_index(drop=True)
    warnings = consistency_warnings(table)
    other = sorted(
        {r.params.get(MONITOR_PARAM, metric) for r in records} - {metric}
        if selection == "best"
        else set()
    )
    if other:
        warnings.insert(
            0,
            f"runs chose their model by {', '.join(other)}, not {metric}: their rows report that "
            f"epoch ranked by its {metric}; pass --metric {other[0]} to rank by it",
        )
    return Leaderboard(table=table, warnings=warnings, metric=metric)
