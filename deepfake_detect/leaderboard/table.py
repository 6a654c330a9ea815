"""Build the leaderboard table from run records (pure: no I/O, no MLflow calls)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from deepfake_detect.leaderboard.records import RunRecord
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    COUNT_METRICS,
    EPOCH_KEYS,
    MONITOR_PARAM,
    SPLITS,
    TEST_KEYS,
    higher_is_better,
)

SWEPT_PARAMS: tuple[str, ...] = ("model.dropout", "optimizer.lr")
ID_COLUMNS: tuple[str, ...] = ("epoch", "run_id", "experiment", "sweep")
SELECTIONS: tuple[str, ...] = ("best", "last")
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


def select_step(record: RunRecord, metric: str, selection: str) -> int | None:
    """The epoch a row reports: ``best`` is the run's model, i.e. its logged ``best_epoch``
    (picked by its ``trainer.monitor``); runs without one (older or failed runs) take the best
    epoch by ``metric`` (earliest on ties, NaN skipped). ``last`` is the last epoch.

    Test metrics exist at one step only (the epoch whose weights were tested), so ranking by
    one of them reports that epoch.
    """
    epochs = record.history.get("train_loss") or record.history.get(EPOCH_KEYS[0]) or {}
    model_epoch = record.history.get(BEST_EPOCH_METRIC)
    if selection == "best" and model_epoch:
        return int(model_epoch[max(model_epoch)])
    if selection == "last":
        steps = set(epochs) | set(record.history.get(metric, {}))
        return max(steps) if steps else None
    if metric in TEST_KEYS and record.history.get(metric):
        return max(record.history[metric])
    values = {s: v for s, v in record.history.get(metric, {}).items() if not math.isnan(v)}
    if not values:
        return max(epochs) if epochs else None
    sign = 1 if higher_is_better(metric) else -1
    return min(values, key=lambda step: (-sign * values[step], step))


def build_row(record: RunRecord, metric: str, selection: str) -> dict[str, object]:
    """One run's row: every value from one epoch (test values only where that epoch's weights
    were tested, i.e. the run's model), ids and params."""
    step = select_step(record, metric, selection)
    row: dict[str, object] = {"model": record.name}
    for key in (*EPOCH_KEYS, *TEST_KEYS):
        row[key] = record.history.get(key, {}).get(step, math.nan) if step is not None else math.nan
    row.update(
        epoch=step,
        run_id=record.run_id,
        experiment=record.experiment,
        sweep=record.parent_run_id,
    )
    return row


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


def consistency_warnings(row: pd.Series) -> list[str]:
    """acc/precision/recall must agree with the TP/FP/TN/FN of the same split and row."""
    found = []
    for split in SPLITS:
        values = {
            name: row.get(f"{split}_{name}")
            for name in ("acc", "precision", "recall", "tp", "fp", "tn", "fn")
        }
        if any(value is None or pd.isna(value) for value in values.values()):
            continue
        tp, fp, tn, fn = (float(values[name]) for name in ("tp", "fp", "tn", "fn"))
        expected = {
            "acc": (tp + tn) / (tp + fp + tn + fn) if tp + fp + tn + fn else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
        }
        broken = [
            f"{split}_{name} {float(values[name]):.4f} != {value:.4f}"
            for name, value in expected.items()
            if value is not None and abs(float(values[name]) - value) > TOLERANCE
        ]
        if broken:
            found.append(
                f"run {row['model']} ({row['run_id']}): {split} counts disagree with its rates "
                f"({'; '.join(broken)}); are TP/FP/TN/FN in the wrong columns?"
            )
    return found


def build_leaderboard(
    records: Sequence[RunRecord], metric: str = "val_auc", selection: str = "best"
) -> Leaderboard:
    """Rows sorted best first by ``metric``; counts as integers; warnings for bad rows."""
    validate_metric(metric)
    if selection not in SELECTIONS:
        raise ValueError(f"--select {selection!r}; choose best or last")
    extra = differing_params(records)
    param_columns = [*SWEPT_PARAMS, *extra]
    columns = ["model", *EPOCH_KEYS, *TEST_KEYS, *ID_COLUMNS, *param_columns]
    rows = []
    for record in records:
        row = build_row(record, metric, selection)
        row.update({key: record.params.get(key, "") for key in param_columns})
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
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
            table[key] = pd.to_numeric(table[key]).round().astype("Int64")
    table["epoch"] = pd.to_numeric(table["epoch"]).astype("Int64")
    table = table.reset_index(drop=True)
    warnings = [w for _, row in table.iterrows() for w in consistency_warnings(row)]
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
