"""``deepfake-detect``: synth, leaderboard, promote, evaluate, predict, cache, runs, artifacts.

Each subcommand's module is imported only when it runs, so ``--help``, ``leaderboard`` and
``promote`` never load TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from deepfake_detect.commands.options import add_tracking_options
from deepfake_detect.config.native_logs import VERBOSE_VARIABLE

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("deepfake_detect.commands.synth", "write the synthetic Real/Fake dataset"),
    "leaderboard": (
        "deepfake_detect.commands.leaderboard",
        "export MLflow runs to the model_eval.csv table",
    ),
    "promote": (
        "deepfake_detect.commands.promote",
        "point a registry alias (champion) at the best run's model",
    ),
    "evaluate": (
        "deepfake_detect.commands.evaluate",
        "evaluate a logged/registered model on a data split and log the result",
    ),
    "matrix": (
        "deepfake_detect.commands.matrix",
        "print and write the cross-dataset (model x test data) AUC/EER table of evaluations",
    ),
    "reproduce": (
        "deepfake_detect.commands.reproduce",
        "re-run a finished training run from its record and compare every metric",
    ),
    "predict": (
        "deepfake_detect.commands.predict",
        "score images or folders with a logged/registered model",
    ),
    "cache": (
        "deepfake_detect.commands.cache",
        "warm, list or clear the decoded-image cache the trainer reads",
    ),
    "runs": (
        "deepfake_detect.commands.runs",
        "list runs (status, last epoch, heartbeat, resumable) or reap dead RUNNING ones",
    ),
    "artifacts": (
        "deepfake_detect.commands.artifacts",
        "hand a store's local artifacts to a tracking server's artifact proxy",
    ),
    "import-csv": (
        "deepfake_detect.commands.import_csv",
        "log a hand-kept model_eval.csv (the seed's table) as FINISHED runs, never promoted",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; subcommand options come from each command module."""
    parser = argparse.ArgumentParser(prog="deepfake-detect", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="keep TensorFlow's native start-up lines (absl, CUDA, oneDNN) on stderr",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name not in ("synth", "runs", "cache", "artifacts"):  # runs: on each of its actions
            add_tracking_options(command)
        importlib.import_module(module_name).add_arguments(command)
    return parser


class _LevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return prefix + record.getMessage()


def show_progress_logs() -> None:
    """Our own INFO lines (progress, cache upkeep) and warnings go to stderr; other
    libraries stay at their defaults."""
    package = logging.getLogger("deepfake_detect")
    if not package.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LevelFormatter())
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        package.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check that the tracking store answers, dispatch; returns the exit status."""
    args = build_parser().parse_args(argv)
    show_progress_logs()
    if args.verbose:  # read where TensorFlow loads (config/native_logs.py), subprocesses too
        os.environ[VERBOSE_VARIABLE] = "1"
    if getattr(args, "connect_timeout", None) is not None:
        from deepfake_detect.tracking.health import StoreUnavailableError, check_store_reachable
        from deepfake_detect.tracking.store import resolve_tracking_uri

        try:
            check_store_reachable(resolve_tracking_uri(args.tracking_uri), args.connect_timeout)
        except StoreUnavailableError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
