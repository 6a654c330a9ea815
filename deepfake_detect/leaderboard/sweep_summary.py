"""A sweep's summary on its parent run: children counts, best child, leaderboard, grid plot."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from deepfake_detect.leaderboard.export import export, terminal_table
from deepfake_detect.leaderboard.reader import read_store
from deepfake_detect.leaderboard.table import build_leaderboard
from deepfake_detect.metrics import plots
from deepfake_detect.tracking.vocabulary import (
    higher_is_better,
)

SUMMARY_METRICS = ("val_auc", "val_acc", "val_loss", "test_auc", "test_acc")


def summarise_sweep(
    client: MlflowClient,
    parent_run_id: str,
    experiment: str,
    metric: str = "val_auc",
    step: int = 0,
) -> tuple[int, int]:
    """Log the children summary, the best child by ``metric`` (the jobs' ``trainer.monitor``),
    the sweep's leaderboard and the dropout x lr plot on the parent run (metrics at ``step``:
    the launch number of a relaunched sweep); return the number of children and of those
    that did not finish."""
    records = read_store(
        client.tracking_uri,
        [experiment],
        parent_run_id,
        True,
        metric,
        "best",
    )
    board = build_leaderboard(records, metric, "best")
    table = board.table
    children = len(table)
    finished_ids = {record.run_id for record in records if record.status == "FINISHED"}
    finished = table[table["run_id"].isin(finished_ids)]
    client.log_metric(parent_run_id, "children", children, step=step)
    client.log_metric(parent_run_id, "children_failed", children - len(finished), step=step)
    pruned = int(table["pruned"].sum()) if children else 0
    client.log_metric(parent_run_id, "children_pruned", pruned, step=step)
    if not finished.empty:
        best = finished.iloc[0]
        for key in SUMMARY_METRICS:
            value = float(best[key])  # rate/loss columns: NaN when missing, never NA
            if not math.isnan(value):
                client.log_metric(parent_run_id, f"best_{key}", value, step=step)
        client.set_tag(parent_run_id, "best_child_run_id", str(best["run_id"]))
        client.set_tag(parent_run_id, "best_child_name", str(best["model"]))
    with tempfile.TemporaryDirectory() as tmp:
        export(board, Path(tmp) / "sweep_leaderboard.csv")
        if not finished.empty:
            plots.sweep_grid(
                [float(v) if v != "" else math.nan for v in finished["model.dropout"]],
                [float(v) if v != "" else math.nan for v in finished["optimizer.lr"]],
                [float(v) for v in finished[metric]],
                metric,
                Path(tmp) / f"{metric}_by_dropout_lr.png",
                higher_is_better(metric),
            )
        client.log_artifacts(parent_run_id, tmp)
    print(terminal_table(board))
    print(
        f"sweep {parent_run_id}: {children} runs, {children - len(finished)} failed, "
        f"{pruned} pruned; "
        f"`deepfake-detect leaderboard --sweep {parent_run_id}` exports it"
    )
    return children, children - len(finished)
