"""Write the leaderboard as CSV (+ Markdown and a PNG bar chart) and print its top rows."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from deepfake_detect.config.output_files import write_atomically
from deepfake_detect.leaderboard.table import Leaderboard

CHART_ROWS = 25  # a readable chart: the top of the table
SUMMARY_COLUMNS = ("model", "epoch", "val_loss", "val_acc", "val_auc", "test_auc")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _column_cells(column: pd.Series) -> list[str]:
    """A column's cells as text: floats to 4 decimals, missing values blank."""
    if pd.api.types.is_float_dtype(column.dtype):
        return ["" if math.isnan(v) else f"{v:.4f}" for v in column.to_numpy()]
    if isinstance(column.dtype, pd.Int64Dtype):
        return column.astype("string").fillna("").tolist()
    return [_cell(v) for v in column.astype(object).to_numpy()]


def markdown_table(table: pd.DataFrame, columns: list[str]) -> str:
    """A GitHub-flavoured Markdown table of ``columns`` (formatted column by column)."""
    cells = [_column_cells(table[c]) for c in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in zip(*cells, strict=True)]
    return "\n".join(lines) + "\n"


def terminal_table(board: Leaderboard, limit: int = 10) -> str:
    """The top rows as aligned text."""
    columns = list(dict.fromkeys([*SUMMARY_COLUMNS, board.metric]))
    cells = [[_cell(row[c]) for c in columns] for _, row in board.table.head(limit).iterrows()]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def export(board: Leaderboard, out: Path, chart: bool = True) -> list[Path]:
    """Write ``out`` (CSV), ``out.md`` and ``out.png`` (top rows) atomically; return paths."""
    out = Path(out)
    written = [write_atomically(out, lambda tmp: board.table.to_csv(tmp, index=False))]
    markdown = markdown_table(board.table, list(board.table.columns))
    written.append(write_atomically(out.with_suffix(".md"), lambda tmp: tmp.write_text(markdown)))
    if chart and not board.table.empty:
        from deepfake_detect.metrics import plots

        top = board.table.head(CHART_ROWS)
        values = [float(v) if pd.notna(v) else math.nan for v in top[board.metric]]
        labels = list(top["model"])
        written.append(
            write_atomically(
                out.with_suffix(".png"),
                lambda tmp: plots.metric_bars(labels, values, board.metric, tmp),
            )
        )
    return written
