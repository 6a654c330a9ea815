"""Write the leaderboard as CSV (+ Markdown and a PNG bar chart) and print its top rows."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

from deepfake_detect.config.output_files import write_atomically
from deepfake_detect.leaderboard.table import FLAG, FLOAT, Column, Leaderboard, column_kind

CHART_ROWS = 25  # a readable chart: the top of the table
SUMMARY_COLUMNS = ("model", "epoch", "val_loss", "val_acc", "val_auc", "test_auc")
FloatText = Callable[[float], str]
FOUR_DECIMALS: FloatText = "{:.4f}".format


def column_cells(name: str, values: Column, float_text: FloatText = FOUR_DECIMALS) -> list[str]:
    """A column's cells as text, column-wise by what the column holds (16k rows x 40
    columns in a fraction of a second): floats through ``float_text``, counts as digits,
    missing values blank."""
    kind = column_kind(name)
    if kind == FLAG:
        return [str(bool(v)) for v in values]
    if kind == FLOAT and not any(map(math.isnan, values)):  # type: ignore[arg-type]
        return list(map(float_text, values))  # type: ignore[arg-type]  # a loop in C
    if kind == FLOAT:
        return ["" if v != v else float_text(v) for v in values]  # type: ignore[arg-type]
    if None not in values:
        return list(map(str, values))
    return ["" if v is None else str(v) for v in values]


def csv_text(board: Leaderboard) -> str:
    """The table as CSV: what ``DataFrame.to_csv(index=False)`` of :attr:`Leaderboard.table`
    writes, byte for byte (floats as their shortest round-trip repr, counts as digits,
    missing blank, minimal quoting), without building the DataFrame."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(board.columns)
    cells = [column_cells(name, values, repr) for name, values in board.columns.items()]
    writer.writerows(zip(*cells, strict=True))
    return out.getvalue()


def markdown_table(board: Leaderboard) -> str:
    """A GitHub-flavoured Markdown table of every column (floats to 4 decimals)."""
    cells = [column_cells(name, values) for name, values in board.columns.items()]
    lines = ["| " + " | ".join(board.columns) + " |", "|" + "---|" * len(board.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in zip(*cells, strict=True)]
    return "\n".join(lines) + "\n"


def terminal_table(board: Leaderboard, limit: int = 10) -> str:
    """The top rows as aligned text."""
    names = list(dict.fromkeys([*SUMMARY_COLUMNS, board.metric]))
    columns = [column_cells(name, board.columns[name][:limit]) for name in names]
    cells = list(zip(*columns, strict=True))
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(names)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(names, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def export(board: Leaderboard, out: Path, chart: bool = True) -> list[Path]:
    """Write ``out`` (CSV), ``out.md`` and ``out.png`` (top rows) atomically; return paths."""
    out = Path(out)
    table = csv_text(board)
    written = [write_atomically(out, lambda tmp: tmp.write_text(table, encoding="utf-8"))]
    markdown = markdown_table(board)
    written.append(write_atomically(out.with_suffix(".md"), lambda tmp: tmp.write_text(markdown)))
    if chart and board.rows:
        from deepfake_detect.metrics import plots

        cells = board.columns[board.metric][:CHART_ROWS]
        values = [float("nan") if v is None else float(v) for v in cells]  # type: ignore[arg-type]
        labels = [str(v) for v in board.columns["model"][:CHART_ROWS]]
        written.append(
            write_atomically(
                out.with_suffix(".png"),
                lambda tmp: plots.metric_bars(labels, values, board.metric, tmp),
            )
        )
    return written
