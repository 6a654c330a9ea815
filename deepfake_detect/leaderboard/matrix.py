"""The cross-dataset table: AUC (or EER) of every evaluated model version on every evaluated
dataset, from evaluation runs (DeepfakeBench's train x test matrix; no TensorFlow)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from deepfake_detect.config.output_files import write_atomically
from deepfake_detect.leaderboard.api_reader import all_experiments, search_all
from deepfake_detect.leaderboard.records import StoreError, choose_experiments
from deepfake_detect.tracking.vocabulary import (
    DATASET_TAG,
    EVALUATION,
    EVALUATION_SPLIT_TAG,
    FINGERPRINT_TAG,
    RUN_TYPE_TAG,
    SOURCE_RUN_TAG,
    TRAIN_DATASET_TAG,
)

MATRIX_METRICS = ("auc", "eer", "ap", "acc", "ece", "jpeg50_auc")
SPLIT_PREFIXES = {"Train": "train", "Validation": "val", "Test": "test"}


@dataclass(frozen=True)
class CrossDatasetMatrix:
    """``values[row][column]`` of one metric; rows are models (with the data they were trained
    on), columns test datasets (``name/split``); NaN where a model was not evaluated there."""

    metric: str
    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    runs: int  # evaluation runs read

    def text(self) -> str:
        """An aligned table for the terminal."""
        first = max([len("model (trained on)"), *map(len, self.rows)])
        widths = [max(len(c), 6) for c in self.columns]
        lines = [
            f"cross-dataset {self.metric} (rows: model and its training data; columns: test data)",
            "  ".join(
                ["model (trained on)".ljust(first)]
                + [c.rjust(w) for c, w in zip(self.columns, widths, strict=True)]
            ),
        ]
        for row, values in zip(self.rows, self.values, strict=True):
            cells = ["-" if math.isnan(v) else f"{v:.4f}" for v in values]
            lines.append(
                "  ".join(
                    [row.ljust(first)] + [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
                )
            )
        return "\n".join(lines)

    def write_csv(self, path: Path) -> Path:
        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["model", *self.columns])
                for row, values in zip(self.rows, self.values, strict=True):
                    writer.writerow([row, *("" if math.isnan(v) else f"{v:.6f}" for v in values)])

        return write_atomically(path, write)

    def write_heatmap(self, path: Path) -> Path:
        from deepfake_detect.metrics.protocol_plots import cross_dataset_heatmap

        return write_atomically(
            path,
            lambda tmp: cross_dataset_heatmap(
                self.rows, self.columns, self.values, self.metric, tmp
            ),
        )


def _model_label(tags: dict[str, str]) -> str:
    name, version = tags.get("registered_model_name"), tags.get("registered_model_version")
    model = f"{name} v{version}" if name and version else f"run {tags.get(SOURCE_RUN_TAG, '?')[:8]}"
    return f"{model} ({tags.get(TRAIN_DATASET_TAG) or '?'})"


def _unique(labels: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """Column labels ``name/split``, with a fingerprint prefix where two datasets share one."""
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {
        key: f"{label} [{key[0][:6]}]" if counts[label] > 1 else label
        for key, label in labels.items()
    }


def build_matrix(
    client: MlflowClient, experiments: list[str], metric: str = "auc", split: str | None = None
) -> CrossDatasetMatrix:
    """The newest evaluation of each (model, dataset, split) in ``experiments`` (all when
    empty), reduced to ``metric``."""
    if metric not in MATRIX_METRICS:
        raise ValueError(f"--metric {metric!r}; choose one of {', '.join(MATRIX_METRICS)}")
    existing = {e.name: e.experiment_id for e in all_experiments(client)}
    ids = list(choose_experiments(existing, experiments))
    runs = search_all(client, ids, f"tags.{RUN_TYPE_TAG} = '{EVALUATION}'") if ids else []
    runs = [r for r in runs if r.info.status == "FINISHED"]
    if split is not None:
        runs = [r for r in runs if r.data.tags.get(EVALUATION_SPLIT_TAG) == split]
    if not runs:
        raise StoreError(
            "no FINISHED evaluation runs"
            + (f" of split {split}" if split else "")
            + (f" in {', '.join(experiments)}" if experiments else "")
            + "; run `deepfake-detect evaluate MODEL_URI --data ROOT` first"
        )
    newest: dict[tuple[str, tuple[str, str]], float] = {}
    started: dict[tuple[str, tuple[str, str]], int] = {}
    rows: dict[str, str] = {}
    columns: dict[tuple[str, str], str] = {}
    for run in runs:
        tags = run.data.tags
        row_key = _model_label(tags)
        split_name = tags.get(EVALUATION_SPLIT_TAG, "?")
        column_key = (tags.get(FINGERPRINT_TAG, ""), split_name)
        prefix = SPLIT_PREFIXES.get(split_name, split_name.lower())
        value = run.data.metrics.get(f"{prefix}_{metric}", math.nan)
        cell = (row_key, column_key)
        if run.info.start_time >= started.get(cell, -1):
            started[cell], newest[cell] = run.info.start_time, value
        rows[row_key] = tags.get(TRAIN_DATASET_TAG, "")
        columns[column_key] = f"{tags.get(DATASET_TAG, '?')}/{split_name}"
    labels = _unique(columns)
    row_order = sorted(rows, key=lambda r: (rows[r], r))
    trained_on = list(dict.fromkeys(rows[r] for r in row_order))  # the diagonal comes first
    names = {c: labels[c].rsplit("/", 1)[0] for c in columns}
    column_order = sorted(
        columns,
        key=lambda c: (
            trained_on.index(names[c]) if names[c] in trained_on else len(trained_on),
            labels[c],
        ),
    )
    values = [[newest.get((r, c), math.nan) for c in column_order] for r in row_order]
    return CrossDatasetMatrix(
        metric, row_order, [labels[c] for c in column_order], values, len(runs)
    )
