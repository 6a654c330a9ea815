"""``deepfake-detect reproduce RUN_ID``: re-run a finished training run from its logged
overrides into a new run and compare every metric side by side."""

from __future__ import annotations

import argparse
import sys

from deepfake_detect.commands.options import number_type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the reproduce command."""
    parser.add_argument("run_id", help="the FINISHED training run to re-run")
    parser.add_argument(
        "--tolerance",
        type=number_type(float, lambda v: 0 <= v < float("inf"), "a number >= 0"),
        default=0.0,
        help="largest absolute metric difference that still matches (default 0: identical, "
        "as on the same machine and versions with trainer.deterministic=true)",
    )


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every metric matches within the tolerance, 1 when some do not, 2 when the
    run cannot be reproduced (unknown, unfinished, other data)."""
    from hydra.errors import HydraException
    from mlflow.exceptions import MlflowException

    from deepfake_detect.data.layout import DataError
    from deepfake_detect.tracking.store import (
        StoreNotFoundError,
        error_line,
        redact,
        require_existing_store,
        resolve_tracking_uri,
        store_client,
    )
    from deepfake_detect.training.reproduce import (
        ReproduceError,
        check_same_data,
        compare_runs,
        environment_warnings,
        logged_overrides,
        reproduction_overrides,
        run_reproduction,
        runtime_differences,
        threads_note,
        training_run,
    )

    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        require_existing_store(uri)
        client = store_client(uri)
        original = training_run(client, args.run_id)
        overrides = reproduction_overrides(logged_overrides(original), args.run_id, uri)
        check_same_data(overrides, original)
        for warning in environment_warnings(original):
            print(f"warning: {warning}; the numbers may differ", file=sys.stderr)
        note = threads_note(original)
        if note:
            print(note, file=sys.stderr)
        command = redact(" ".join(overrides))
        print(f"reproducing run {args.run_id}: deepfake-train {command}", flush=True)
        reproduced = run_reproduction(client, original, overrides)
        for change in runtime_differences(original, reproduced):
            print(f"warning: {change}; the numbers may differ", file=sys.stderr)
        differences = compare_runs(client, original, reproduced)
    except (
        ReproduceError,
        DataError,
        StoreNotFoundError,
        MlflowException,
        HydraException,
    ) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    new_id = reproduced.info.run_id
    print(f"\n{'metric':<16} {'original':>12} {'reproduced':>12} {'difference':>12}")

    def cell(value: float | None) -> str:
        return f"{value:>12.6g}" if value is not None else f"{'missing':>12}"

    for diff in differences:
        mark = "" if diff.within(args.tolerance) else "  <- differs"
        delta = f"{diff.delta:>12.3g}"
        print(f"{diff.key:<16} {cell(diff.original)} {cell(diff.reproduced)} {delta}{mark}")
    failed = [diff.key for diff in differences if not diff.within(args.tolerance)]
    if failed:
        print(
            f"run {new_id} does not reproduce {args.run_id}: {len(failed)} of "
            f"{len(differences)} metrics differ by more than {args.tolerance:g} "
            f"({', '.join(failed)})"
        )
        return 1
    print(
        f"run {new_id} reproduces {args.run_id}: all {len(differences)} metrics within "
        f"{args.tolerance:g}"
    )
    return 0
