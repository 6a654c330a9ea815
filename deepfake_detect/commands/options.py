"""Command-line options shared by the commands: the tracking store, run selection."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from deepfake_detect.config.paths import DEFAULT_CACHE_DIR
from deepfake_detect.tracking.health import DEFAULT_CONNECT_TIMEOUT

TRACKING_HELP = "tracking URI (default: $MLFLOW_TRACKING_URI, else the project's mlruns/mlflow.db)"


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """``--tracking-uri`` and ``--connect-timeout`` (checked before the command runs)."""
    parser.add_argument("--tracking-uri", help=TRACKING_HELP)
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help="give up on an unreachable tracking server after this long (default "
        f"{DEFAULT_CONNECT_TIMEOUT:g})",
    )


def add_run_filters(parser: argparse.ArgumentParser) -> None:
    """``--experiment`` (repeatable) and ``--sweep``."""
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="experiment name (repeatable; default: all experiments)",
    )
    parser.add_argument("--sweep", help="only the children of this sweep's parent run id")


def add_run_selection(parser: argparse.ArgumentParser) -> None:
    """The run filters plus ``--metric`` (leaderboard, promote)."""
    add_run_filters(parser)
    parser.add_argument("--metric", default="val_auc", help="ranking metric (default val_auc)")


def add_cache_dir_option(parser: argparse.ArgumentParser, allow_none: bool = True) -> None:
    """``--cache-dir``: the decoded-image cache, by default the trainer's ``data.cache_dir``."""

    def cache_dir(text: str) -> Path | None:
        if allow_none and text.lower() == "none":
            return None
        return Path(text).expanduser().resolve()

    parser.add_argument(
        "--cache-dir",
        type=cache_dir,
        default=DEFAULT_CACHE_DIR,
        metavar="DIR",
        help=f"decoded-image cache (default: the trainer's data.cache_dir, {DEFAULT_CACHE_DIR})"
        + ("; none: decode into a temporary file" if allow_none else ""),
    )


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


def format_age(seconds: float | None) -> str:
    """``42s ago``, ``5m ago``, ``3h ago``, ``2d ago`` (``-`` when unknown)."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def number_type(
    convert: Callable[[str], float], accept: Callable[[float], bool], expected: str
) -> Callable[[str], float]:
    """An argparse type: ``convert(text)`` when ``accept`` takes it, else a usage error
    ``'TEXT': expected EXPECTED``."""

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value

    return parse
