"""``deepfake-detect leaderboard``: export the runs of a store to ``model_eval.csv``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_detect.commands.options import add_run_selection
from deepfake_detect.config.paths import RESULTS_DIR

MAX_WARNINGS = 20  # consistency warnings printed (all rows are still checked)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the leaderboard command."""
    add_run_selection(parser)
    parser.add_argument(
        "--select",
        choices=("best", "last"),
        default="best",
        help="which epoch a row reports (default: best by --metric)",
    )
    parser.add_argument(
        "--include-failed",
        action="store_true",
        help="also export FAILED/KILLED/RUNNING runs (missing values blank)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / "model_eval.csv",
        help="CSV path; .md and .png are written beside it",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG bar chart")


def run(args: argparse.Namespace) -> int:
    """Export and report; exit status 0 on success, 2 on bad input or unwritable output."""
    from deepfake_detect.config.output_files import OutputError
    from deepfake_detect.leaderboard.export import export, terminal_table
    from deepfake_detect.leaderboard.reader import collect
    from deepfake_detect.leaderboard.records import StoreError

    try:
        board = collect(
            args.tracking_uri,
            args.experiment,
            args.sweep,
            args.include_failed,
            args.metric,
            args.select,
        )
        paths = export(board, args.out, chart=not args.no_chart)
    except (StoreError, ValueError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in board.warnings[:MAX_WARNINGS]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(board.warnings) > MAX_WARNINGS:
        print(
            f"warning: ... and {len(board.warnings) - MAX_WARNINGS} more inconsistent rows",
            file=sys.stderr,
        )
    if not board.rows:
        print(f"no runs matched: wrote a header-only table to {args.out}")
        return 0
    print(terminal_table(board))
    print(
        f"\n{board.rows} runs ranked by {board.metric} ({args.select} epoch) -> "
        + ", ".join(str(p) for p in paths)
    )
    return 0
