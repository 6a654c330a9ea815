"""``deepfake-detect matrix``: the cross-dataset table (models x test datasets) from
evaluation runs, printed and written as CSV and heatmap PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the matrix command."""
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="experiment(s) holding the evaluation runs (default: deepfake_detect-evaluation; "
        "repeat for several)",
    )
    parser.add_argument(
        "--metric",
        action="append",
        help="auc, eer, ap, acc, ece or jpeg50_auc (default: auc and eer); repeat for several",
    )
    parser.add_argument("--split", help="only evaluations of this split (default: all)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/cross_dataset.csv"),
        help="CSV path; each metric writes <stem>_<metric>.csv and .png (default "
        "results/cross_dataset.csv)",
    )


def run(args: argparse.Namespace) -> int:
    """Print each metric's matrix and write its CSV and heatmap; exit 2 on bad input."""
    from mlflow.exceptions import MlflowException

    from deepfake_detect.leaderboard.matrix import build_matrix
    from deepfake_detect.leaderboard.records import StoreError
    from deepfake_detect.tracking.store import (
        StoreNotFoundError,
        error_line,
        require_existing_store,
        resolve_tracking_uri,
        store_client,
    )

    uri = resolve_tracking_uri(args.tracking_uri)
    experiments = args.experiment or ["deepfake_detect-evaluation"]
    try:
        require_existing_store(uri)
        client = store_client(uri)
        for metric in args.metric or ["auc", "eer"]:
            matrix = build_matrix(client, experiments, metric, args.split)
            print(matrix.text())
            stem = args.out.with_name(f"{args.out.stem}_{metric}")
            written = [matrix.write_csv(stem.with_suffix(".csv"))]
            written.append(matrix.write_heatmap(stem.with_suffix(".png")))
            print(f"wrote {', '.join(map(str, written))} ({matrix.runs} evaluation runs)\n")
    except (StoreError, StoreNotFoundError, ValueError, MlflowException) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    return 0
