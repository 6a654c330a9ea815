"""``deepfake-detect``: synth, leaderboard, promote, evaluate, predict.

Each subcommand's module is imported only when it runs, so ``--help``, ``leaderboard`` and
``promote`` never load TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    "predict": (
        "deepfake_detect.commands.predict",
        "score images or folders with a logged/registered model",
    ),
}
TRACKING_HELP = "tracking URI (default: $MLFLOW_TRACKING_URI, else the project's mlruns/mlflow.db)"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; subcommand options come from each command module."""
    parser = argparse.ArgumentParser(prog="deepfake-detect", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name != "synth":
            command.add_argument("--tracking-uri", help=TRACKING_HELP)
        importlib.import_module(module_name).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch; returns the exit status."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.run(args)


if __name__ == "__main__":
    sys.exit(main())
