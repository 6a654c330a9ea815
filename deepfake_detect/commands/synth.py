"""``deepfake-detect synth``: write the synthetic dataset."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from deepfake_detect.commands.options import number_type, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the synth command."""
    parser.add_argument("out", type=Path, help="output folder (gets Train/Validation/Test)")
    parser.add_argument(
        "--size", type=positive_int, default=128, help="image size in px (default 128)"
    )
    parser.add_argument("--train", type=positive_int, default=600, help="train images per class")
    parser.add_argument("--val", type=positive_int, default=200, help="validation images per class")
    parser.add_argument("--test", type=positive_int, default=200, help="test images per class")
    parser.add_argument("--seed", type=int, default=0, help="random seed (deterministic output)")
    parser.add_argument(
        "--strength",
        type=number_type(float, lambda v: 0 <= v < float("inf"), "a number >= 0"),
        default=1.0,
        help="scale of the fakes' artefacts (default 1; 2: stronger, for a second dataset)",
    )


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and say where it is."""
    from deepfake_detect.data.synthetic import generate_dataset

    start = time.perf_counter()
    counts = {"Train": args.train, "Validation": args.val, "Test": args.test}
    try:
        written = generate_dataset(args.out, args.size, counts, args.seed, args.strength)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    total = sum(written.values())
    print(
        f"wrote {total} images ({written}) at {args.size}px to {args.out} "
        f"in {time.perf_counter() - start:.1f}s"
    )
    return 0
