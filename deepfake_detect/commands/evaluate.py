"""``deepfake-detect evaluate``: the evaluation protocol of a model on one or more datasets
and splits, one evaluation run each, linked to the model version."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_detect.commands.options import (
    MODEL_URI_HELP,
    add_cache_dir_option,
    number_type,
    positive_int,
)
from deepfake_detect.data.perturbations import DEFAULT_SPEC, SPEC_HELP, parse_spec

SHOWN = ("auc", "eer", "ap", "acc", "precision", "recall", "loss", "tp", "fp", "tn", "fn")


def robustness_spec(text: str):
    """argparse type of ``--robustness``: the parsed perturbations."""
    try:
        return parse_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluate command."""
    parser.add_argument("model_uri", help=MODEL_URI_HELP)
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        action="append",
        help="dataset root with SPLIT/{Real,Fake}; repeat for several datasets",
    )
    parser.add_argument(
        "--split",
        action="append",
        help="split folder (default Test); repeat for several splits",
    )
    parser.add_argument(
        "--robustness",
        type=robustness_spec,
        default=parse_spec(DEFAULT_SPEC),
        metavar="SPEC",
        help=SPEC_HELP,
    )
    parser.add_argument(
        "--ece-bins", type=positive_int, default=15, help="calibration bins (default 15)"
    )
    parser.add_argument(
        "--review",
        type=positive_int,
        default=8,
        metavar="K",
        help="the K most confident false positives and negatives shown (default 8)",
    )
    parser.add_argument(
        "--no-gradcam", action="store_true", help="skip the Grad-CAM overlays of those images"
    )
    parser.add_argument(
        "--system-metrics-seconds",
        type=number_type(float, lambda v: 0 <= v < float("inf"), "seconds >= 0"),
        default=10.0,
        help="MLflow system metrics sampling interval (default 10; 0: off)",
    )
    parser.add_argument(
        "--output-experiment",
        default="deepfake_detect-evaluation",
        help="experiment the evaluation runs are logged to (default deepfake_detect-evaluation)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")
    add_cache_dir_option(parser)


def print_evaluation(model_uri: str, result) -> None:
    """The run, the clean metrics at 0.5 and at the model's threshold, ECE, robustness."""
    report = result.report
    print(
        f"evaluated {model_uri} on {result.folder} ({result.images} images) -> "
        f"evaluation run {result.run_id}"
    )
    if result.earlier_runs:
        listed = ", ".join(run[:8] for run in result.earlier_runs[:5])
        print(
            f"  note: {len(result.earlier_runs)} earlier evaluation run(s) of this model on this "
            f"data and split ({listed}) are kept; this is a new run, and `matrix` uses the newest"
        )
    print(f"  {'metric':<16} {'at 0.5':>10} {f'at {report.threshold:.4f}':>12}")
    for key in SHOWN:
        value = report.metrics[key]
        tuned = (report.at_threshold or {}).get(key, value)
        print(f"  {result.prefix + '_' + key:<16} {value:>10.6g} {tuned:>12.6g}")
    print(f"  {result.prefix + '_ece':<16} {result.ece:>10.6g}")
    if result.robustness:
        clean = report.metrics
        print(f"  {'robustness':<22} {'auc':>8} {'eer':>8} {'acc':>8} {'ap':>8} {'auc drop':>9}")
        print(
            f"  {'clean':<22} {clean['auc']:>8.4f} {clean['eer']:>8.4f} "
            f"{clean['acc']:>8.4f} {clean['ap']:>8.4f} {0:>9.4f}"
        )
        for perturbation, m in result.robustness:
            print(
                f"  {perturbation.describe():<22} {m['auc']:>8.4f} {m['eer']:>8.4f} "
                f"{m['acc']:>8.4f} {m['ap']:>8.4f} {clean['auc'] - m['auc']:>9.4f}"
            )


def run(args: argparse.Namespace) -> int:
    """Evaluate every (dataset, split), log each in a run linked to the model version, print."""
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
    splits = args.split or ["Test"]
    jobs = [(root, split) for root in args.data for split in splits]
    try:
        for root, split in jobs:  # every folder checked before the model loads
            require_split_folder(root, split)
        loaded = open_model(uri, args.model_uri)
        from deepfake_detect.inference.evaluate import Protocol, evaluate_model  # TensorFlow

        protocol = Protocol(
            args.robustness,
            args.ece_bins,
            args.review,
            not args.no_gradcam,
            args.system_metrics_seconds or None,
        )
        for root, split in jobs:
            result = evaluate_model(
                loaded,
                uri,
                root,
                split,
                args.output_experiment,
                args.batch_size,
                args.cache_dir,
                protocol,
            )
            print_evaluation(args.model_uri, result)
    except (DataError, RegistryError, StoreNotFoundError, MlflowException, ValueError) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    except Terminated as stop:  # the run is KILLED already
        print(f"error: {stop}", file=sys.stderr)
        return stop.exit_status
    return 0
