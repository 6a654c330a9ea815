"""Command-line options shared by the commands that select runs (leaderboard, promote)."""

from __future__ import annotations

import argparse


def add_run_selection(parser: argparse.ArgumentParser) -> None:
    """``--experiment`` (repeatable), ``--sweep`` and ``--metric``."""
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="experiment name (repeatable; default: all experiments)",
    )
    parser.add_argument("--sweep", help="only the children of this sweep's parent run id")
    parser.add_argument("--metric", default="val_auc", help="ranking metric (default val_auc)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size 0`` is a usage error, not a crash)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


MODEL_URI_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"
