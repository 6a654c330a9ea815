"""``deepfake-detect evaluate``: score a model on a data split and log an evaluation run."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

SPLIT_PREFIXES = {"Train": "train", "Validation": "val", "Test": "test"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluate command."""
    parser.add_argument(
        "model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="dataset root with SPLIT/{Real,Fake}"
    )
    parser.add_argument("--split", default="Test", help="split folder (default Test)")
    parser.add_argument(
        "--experiment",
        default="deepfake_detect-evaluation",
        help="experiment for the evaluation run",
    )
    parser.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    """Evaluate, log metrics and plots in a run linked to the model version, print metrics."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from deepfake_detect.data.decode_cache import decode_split
    from deepfake_detect.data.layout import DataError, require_root, scan_split
    from deepfake_detect.inference import model_source
    from deepfake_detect.metrics import plots
    from deepfake_detect.metrics.binary import binary_metrics
    from deepfake_detect.tracking.registered_models import RegistryError
    from deepfake_detect.tracking.store import ensure_experiment, resolve_tracking_uri
    from deepfake_detect.tracking.vocabulary import EVALUATION, RUN_TYPE_TAG

    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        client = MlflowClient(tracking_uri=uri)
        source = model_source.resolve_source(client, args.model_uri)
        names = model_source.class_names(client, source)
        files = scan_split(require_root(args.data), args.split, names)
        model = model_source.load_keras(source)
        decoded = decode_split(files, int(model.input_shape[1]), skip_corrupt=True)
    except (DataError, RegistryError, MlflowException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    prob = model.predict(
        decoded.images.astype("float32"), batch_size=args.batch_size, verbose=0
    ).ravel()
    metrics = binary_metrics(decoded.labels, prob)
    prefix = SPLIT_PREFIXES.get(args.split, args.split.lower())
    tags = {
        RUN_TYPE_TAG: EVALUATION,
        "model_uri": args.model_uri,
        "source_run_id": source.run_id or "",
        "registered_model_name": source.model_name or "",
        "registered_model_version": source.version or "",
        "data_root": str(files.root),
        "split": args.split,
        "skipped_images": str(len(decoded.skipped)),
    }
    experiment_id = ensure_experiment(uri, args.experiment)
    run = client.create_run(experiment_id, run_name=f"evaluate-{args.model_uri}", tags=tags)
    run_id = run.info.run_id
    for key, value in metrics.items():
        client.log_metric(run_id, f"{prefix}_{key}", value)
    with tempfile.TemporaryDirectory() as tmp:
        plots.split_report(prefix, decoded.labels, prob, metrics, names, Path(tmp))
        client.log_artifacts(run_id, tmp, artifact_path="plots")
    client.set_terminated(run_id, "FINISHED")
    if source.model_name and source.version:
        client.set_model_version_tag(
            source.model_name, source.version, f"evaluation.{prefix}_auc", f"{metrics['auc']:.6f}"
        )
        client.set_model_version_tag(
            source.model_name, source.version, "evaluation.last_run_id", run_id
        )
    print(
        f"evaluated {args.model_uri} on {files.root / args.split} ({len(decoded.labels)} "
        f"images) -> evaluation run {run_id}"
    )
    for key, value in metrics.items():
        print(f"  {prefix}_{key:<10} {value:.6g}")
    return 0
