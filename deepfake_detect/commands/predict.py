"""``deepfake-detect predict``: probability of the positive class (Fake) per image."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the predict command."""
    parser.add_argument(
        "model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"
    )
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", type=Path, help="write CSV here instead of stdout")
    parser.add_argument(
        "--threshold",
        type=float,
        help="decision threshold (default: the run's validation Youden threshold, else 0.5)",
    )
    parser.add_argument("--batch-size", type=int, default=64)


def progress(done: int, total: int) -> None:
    """A one-line progress bar on stderr."""
    width = 30
    filled = int(width * done / max(total, 1))
    end = "\n" if done >= total else ""
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    """Score every image; rows: path, probability of the positive class, label."""
    from mlflow.tracking import MlflowClient

    from deepfake_detect.config.output_files import OutputError, write_atomically
    from deepfake_detect.data.layout import DataError
    from deepfake_detect.inference import image_inputs, model_source
    from deepfake_detect.tracking.registered_models import RegistryError
    from deepfake_detect.tracking.store import resolve_tracking_uri

    try:
        client = MlflowClient(tracking_uri=resolve_tracking_uri(args.tracking_uri))
        source = model_source.resolve_source(client, args.model_uri)
        inputs = image_inputs.collect(args.paths)
        threshold = (
            args.threshold
            if args.threshold is not None
            else model_source.decision_threshold(client, source)
        )
        negative, positive = model_source.class_names(client, source)
        model = model_source.load_keras(source)
        size = int(model.input_shape[1])
        total = len(inputs.paths)
        rows: list[tuple[str, str, str]] = []
        for batch in image_inputs.decode_batches(inputs, size, args.batch_size):
            prob = model.predict(batch.images, verbose=0).ravel()
            rows += [
                (str(p), f"{q:.6f}", positive if q > threshold else negative)
                for p, q in zip(batch.paths, prob, strict=True)
            ]
            if total > args.batch_size:
                progress(len(rows) + len(inputs.skipped), total)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", f"prob_{positive.lower()}", "label"])
        writer.writerows(rows)
        if args.out:
            write_atomically(args.out, lambda tmp: tmp.write_text(buffer.getvalue()))
        else:
            sys.stdout.write(buffer.getvalue())
    except (DataError, RegistryError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"scored {len(rows)} images with threshold {threshold:.4f}"
        + (f"; skipped {len(inputs.skipped)} unreadable" if inputs.skipped else "")
        + (f"; wrote {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0
