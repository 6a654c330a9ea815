"""``deepfake-detect import-csv``: a hand-kept model_eval.csv (the seed's table) as runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_EXPERIMENT = "deepfake_detect-imported"  # leaderboard/import_table.DEFAULT_EXPERIMENT

EPILOG = """\
Each row with values becomes a FINISHED run named after its model (run_type=training,
model=NAME, imported=true, imported_sha256, imported_file, imported_row), every value logged
at step 0 with best_epoch 0: `deepfake-detect leaderboard` lists them beside trained runs;
`promote` never picks them (they have no model). Rows without values (the seed's `models`
row) are skipped. The file is read and checked whole before any run is made; importing the
same file again creates nothing (rows are found by the file's sha256 in every experiment).

A split whose acc/precision/recall contradict its tp/fp/tn/fn (tolerance 0.001) is repaired by
the permutation of its four count columns that makes them agree (if none does: of the counts
together with precision/recall/auc) moving the fewest columns, logged with the tag
columns_fixed; otherwise the row is imported as written and tagged inconsistent=true.

columns_fixed notation: SPLIT:LOGGED<-FILE per repaired split, ';' between splits, only the
moved columns listed: train:fn,fp,tn,tp<-tp,tn,fp,fn means the logged train_fn is the file's
train_tp column, train_fp its train_tn, train_tn its train_fp, train_tp its train_fn.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the import-csv command."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "csv",
        type=Path,
        metavar="MODEL_EVAL_CSV",
        help="the table: one or two leading columns (index, model names), then train_loss ... "
        "val_tp and optionally test_loss ... test_tp",
    )
    parser.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help=f"experiment of the new runs (default {DEFAULT_EXPERIMENT})",
    )


def run(args: argparse.Namespace) -> int:
    """Import; exit 0 (also when everything was imported before), 2 on bad input."""
    from mlflow.exceptions import MlflowException

    from deepfake_detect.config.validation import ConfigError
    from deepfake_detect.leaderboard.import_table import ImportTableError, import_table, read_table
    from deepfake_detect.tracking.store import error_line, redact, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        table = read_table(args.csv)
        result = import_table(table, uri, args.experiment)
    except (ImportTableError, ConfigError, MlflowException, OSError) as error:
        print(f"error: {error_line(error)}; nothing was imported", file=sys.stderr)
        return 2
    digest = f"sha256 {table.sha256[:12]}"
    if not result.created:
        runs = ", ".join(
            f"{run.name} ({run.run_id[:8]}, experiment {run.experiment})" for run in result.previous
        )
        print(f"nothing new imported: {table.path} ({digest}) was imported before as {runs}")
        return 0
    for row, _ in result.created:
        for fix in row.fixes:
            print(
                f"warning: {table.path} {row.where}: {fix.split} counts disagree with its "
                f"rates as written; {fix.describe()} (tag columns_fixed)",
                file=sys.stderr,
            )
        for problem in row.problems:
            print(
                f"warning: {table.path} {row.where}: {problem.split} counts disagree with its "
                f"rates ({problem.details}) and no permutation of its columns fixes them; "
                "imported as written, tagged inconsistent=true",
                file=sys.stderr,
            )
    print(
        f"imported {len(result.created)} runs from {table.path} ({digest}) into experiment "
        f"{result.experiment} of {redact(uri)}:"
    )
    for row, run_id in result.created:
        notes = [f"columns fixed {';'.join(f.notation() for f in row.fixes)}"] if row.fixes else []
        notes += ["inconsistent"] if row.problems else []
        extra = f" [{', '.join(notes)}]" if notes else ""
        print(f"  {row.name} (run {run_id[:8]}, row {row.position}){extra}")
    if table.blank:
        names = ", ".join(f"{b.name or '(no name)'} (row {b.position})" for b in table.blank)
        print(f"skipped {len(table.blank)} blank row(s): {names}")
    if result.previous:
        names = ", ".join(f"{run.name} ({run.run_id[:8]})" for run in result.previous)
        print(f"already imported before: {names}")
    return 0
