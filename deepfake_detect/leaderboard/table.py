"""Build the leaderboard table from run records (pure: no I/O, no MLflow calls).

The table is plain columns (lists): the export writes them directly, and pandas (0.4 s to
import) is loaded only by callers that ask for :attr:`Leaderboard.table`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from deepfake_detect.leaderboard.rates import rates_from_counts
from deepfake_detect.leaderboard.records import SWEPT_PARAMS, RunRecord
from deepfake_detect.leaderboard.selection import (
    facts_from_history,
    pick_epoch,
    validate_metric,
    validate_selection,
)
from deepfake_detect.tracking.vocabulary import (
    COUNT_METRICS,
    EPOCH_KEYS,
    MONITOR_PARAM,
    SPLITS,
    TEST_KEYS,
    higher_is_better,
)

if TYPE_CHECKING:
    import pandas as pd

ID_COLUMNS: tuple[str, ...] = ("epoch", "run_id", "experiment", "sweep", "pruned")
TOLERANCE = 1e-3
# params that always differ and say nothing about the model
_NOISY_PARAMS = ("runtime.", "hydra.", "paths.", "tracking.")


Column = list[object]
FLOAT, INTEGER, FLAG, TEXT = "float", "integer", "flag", "text"  # what a column holds
COUNT_OR_EPOCH = frozenset(
    [key for key in (*EPOCH_KEYS, *TEST_KEYS) if key.rsplit("_", 1)[-1] in COUNT_METRICS]
    + ["epoch"]
)


def column_kind(name: str) -> str:
    """``float`` (rates and losses, NaN when missing), ``integer`` (TP/FP/TN/FN and the
    epoch, None when missing), ``flag`` (pruned) or ``text`` (names, ids, params)."""
    if name in COUNT_OR_EPOCH:
        return INTEGER
    if name in EPOCH_KEYS or name in TEST_KEYS:
        return FLOAT
    return FLAG if name == "pruned" else TEXT


@dataclass(frozen=True)
class Leaderboard:
    """The table (columns in order, rows best first) plus the consistency warnings found
    while building it."""

    columns: dict[str, Column]
    warnings: list[str]
    metric: str
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", len(next(iter(self.columns.values()), [])))

    def row_dicts(self) -> list[dict[str, object]]:
        """The rows, best first, as column -> value."""
        return [
            dict(zip(self.columns, row, strict=True))
            for row in zip(*self.columns.values(), strict=True)
        ]

    @cached_property
    def table(self) -> pd.DataFrame:
        """The table as a DataFrame (rates float, counts and epoch ``Int64``, text ``str``)."""
        import pandas as pd

        dtypes = {FLOAT: "float64", INTEGER: "Int64", FLAG: "bool"}
        return pd.DataFrame(
            {
                name: pd.Series(values, dtype=dtypes.get(column_kind(name)))
                for name, values in self.columns.items()
            },
            columns=list(self.columns),
        )


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
    for key in (*EPOCH_KEYS, *TEST_KEYS):  # map: the loop runs in C (16k runs x 31 keys)
        columns[key] = list(map(dict.get, at_step, repeat(key), repeat(math.nan)))
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


def _as_floats(values: Column) -> np.ndarray:
    """A column as float64 (None as NaN)."""
    return np.array([math.nan if v is None else v for v in values], dtype=float)


def consistency_warnings(columns: dict[str, Column]) -> list[str]:
    """acc/precision/recall must agree with the TP/FP/TN/FN of the same split and row
    (checked column-wise: a 16k-row table is checked in milliseconds)."""
    found: list[tuple[int, int, str]] = []  # (row, split, message): reported in row order
    models, run_ids = columns["model"], columns["run_id"]
    for split_index, split in enumerate(SPLITS):
        names = {
            name: f"{split}_{name}"
            for name in ("acc", "precision", "recall", "tp", "fp", "tn", "fn")
        }
        if not models or not set(names.values()) <= set(columns):
            continue
        values = {name: _as_floats(columns[c]) for name, c in names.items()}
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


def _as_counts(values: Column) -> Column:
    """Logged counts (floats) as integers, rounded; None (blank in the table) where missing,
    NaN or not below 2**53 in size (``abs`` of NaN compares False)."""
    if values and max(map(abs, values)) < 2**53 and not any(map(math.isnan, values)):  # type: ignore[arg-type]
        return list(map(round, values))  # type: ignore[arg-type]  # a loop in C
    return [round(v) if abs(v) < 2**53 else None for v in values]  # type: ignore[arg-type]


def _row_order(columns: dict[str, Column], metric: str) -> list[int]:
    """Rows best first by ``metric`` (missing last), then by model and run id (stable)."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    ranked = columns[metric]
    missing = list(map(math.isnan, ranked))  # type: ignore[arg-type]
    signed = [0.0 if gap else sign * v for gap, v in zip(missing, ranked, strict=True)]  # type: ignore[operator]
    names, run_ids = map(str, columns["model"]), map(str, columns["run_id"])
    keys = list(zip(missing, signed, names, run_ids, strict=True))
    return sorted(range(len(keys)), key=keys.__getitem__)


def build_leaderboard(
    records: Sequence[RunRecord], metric: str = "val_auc", selection: str = "best"
) -> Leaderboard:
    """Rows sorted best first by ``metric``; counts as integers; warnings for bad rows."""
    validate_metric(metric)
    validate_selection(selection)
    extra = differing_params(records)
    param_columns = [*SWEPT_PARAMS, *extra]
    built = build_columns(records, metric, selection, param_columns)
    for key in (*EPOCH_KEYS, *TEST_KEYS):
        built[key] = list(map(float, built[key]))  # type: ignore[arg-type]
    order = _row_order(built, metric)
    columns = {name: list(map(values.__getitem__, order)) for name, values in built.items()}
    columns["model"] = unique_names(columns["model"], columns["run_id"])  # type: ignore[arg-type]
    for key in COUNT_OR_EPOCH - {"epoch"}:
        columns[key] = _as_counts(columns[key])
    columns["epoch"] = [None if step is None else int(step) for step in columns["epoch"]]  # type: ignore[call-overload]
    warnings = consistency_warnings(columns)
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
    return Leaderboard(columns=columns, warnings=warnings, metric=metric)
