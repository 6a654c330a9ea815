"""``deepfake-detect evaluate``: score a model on a data split and log an evaluation run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_detect.commands.options import MODEL_URI_HELP, add_cache_dir_option, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluate command."""
    parser.add_argument("model_uri", help=MODEL_URI_HELP)
    parser.add_argument(
        "--data", required=True, type=Path, help="dataset root with SPLIT/{Real,Fake}"
    )
    parser.add_argument("--split", default="Test", help="split folder (default Test)")
    parser.add_argument(
        "--output-experiment",
        default="deepfake_detect-evaluation",
        help="experiment the evaluation run is logged to (default deepfake_detect-evaluation)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")
    add_cache_dir_option(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate, log metrics and plots in a run linked to the model version, print metrics."""
    from mlflow.exceptions import MlflowException

    from deepfake_detect.data.layout import DataError, require_split_folder
    from deepfake_detect.inference.model_source import open_model
    from deepfake_detect.tracking.lifecycle import Terminated
    from deepfake_detect.tracking.registered_models import RegistryError
    from deepfake_detect.tracking.store import (
        StoreNotFoundError,
        error_line,
        resolve_tracking_uri,
    )

    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        require_split_folder(args.data, args.split)
        loaded = open_model(uri, args.model_uri)
        from deepfake_detect.inference.evaluate import evaluate_model  # TensorFlow loads here

        result = evaluate_model(
            loaded,
            uri,
            args.data,
            args.split,
            args.output_experiment,
            args.batch_size,
            args.cache_dir,
        )
    except (DataError, RegistryError, StoreNotFoundError, MlflowException, ValueError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    except Terminated as stop:  # the run is KILLED already
        print(f"error: {stop}", file=sys.stderr)
        return stop.exit_status
    report = result.report
    print(
        f"evaluated {args.model_uri} on {result.folder} ({result.images} images) -> "
        f"evaluation run {result.run_id}"
    )
    print(f"  {'metric':<12} {'at 0.5':>10} {f'at {report.threshold:.4f}':>12}")
    for key, value in report.metrics.items():
        tuned = (report.at_threshold or {}).get(key, value)
        print(f"  {result.prefix}_{key:<8} {value:>10.6g} {tuned:>12.6g}")
    return 0
