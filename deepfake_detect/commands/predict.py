"""``deepfake-detect predict``: probability of the positive class (Fake) per image."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from deepfake_detect.commands.options import MODEL_URI_HELP, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the predict command."""
    parser.add_argument("model_uri", help=MODEL_URI_HELP)
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", type=Path, help="write CSV here instead of stdout")
    parser.add_argument(
        "--threshold",
        type=float,
        help="decision threshold (default: the model's validation Youden threshold)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")


def run(args: argparse.Namespace) -> int:
    """Score every image; rows: path, probability of the positive class, label."""
    from mlflow.exceptions import MlflowException

    from deepfake_detect.config.output_files import OutputError, write_atomically
    from deepfake_detect.data.layout import DataError
    from deepfake_detect.data.progress import reported_progress
    from deepfake_detect.inference.image_inputs import collect
    from deepfake_detect.inference.model_source import open_model
    from deepfake_detect.tracking.registered_models import RegistryError
    from deepfake_detect.tracking.store import (
        StoreNotFoundError,
        error_line,
        resolve_tracking_uri,
    )

    try:
        inputs = collect(args.paths)  # wrong paths fail before TensorFlow loads
        loaded = open_model(resolve_tracking_uri(args.tracking_uri), args.model_uri)
        from deepfake_detect.inference.predict import predict_paths

        with reported_progress(len(inputs.paths), "predicting") as advance:
            result = predict_paths(loaded, inputs, args.batch_size, args.threshold, advance)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", f"prob_{result.positive.lower()}", "label"])
        writer.writerows((path, f"{prob:.6f}", label) for path, prob, label in result.rows)
        if args.out:
            write_atomically(args.out, lambda tmp: tmp.write_text(buffer.getvalue()))
        else:
            sys.stdout.write(buffer.getvalue())
    except (DataError, RegistryError, StoreNotFoundError, OutputError, MlflowException) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(
        f"scored {len(result.rows)} images with threshold {result.threshold:.4f}"
        + (f"; skipped {len(result.skipped)} unreadable" if result.skipped else "")
        + (f"; wrote {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0
