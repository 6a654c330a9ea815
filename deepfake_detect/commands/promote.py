"""``deepfake-detect promote``: point an alias at the best comparable run's model version."""

from __future__ import annotations

import argparse
import sys

from deepfake_detect.commands.options import add_run_selection, number_type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the promote command."""
    add_run_selection(parser)
    parser.add_argument("--alias", default="champion", help="alias to move (default champion)")
    parser.add_argument(
        "--model-name",
        default="deepfake-detector",
        help="registered model name (default deepfake-detector)",
    )
    parser.add_argument(
        "--dataset",
        help="only runs on this dataset (name or fingerprint; default: the champion's)",
    )
    parser.add_argument(
        "--image-size", type=int, help="only runs at this image size (default: the champion's)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the champion even when it is better"
    )
    parser.add_argument(
        "--max-robustness-drop",
        type=number_type(float, lambda v: 0 <= v <= 1, "an AUC difference from 0 to 1"),
        metavar="AUC",
        help="refuse a candidate whose newest evaluation's AUC at JPEG quality 50 is more than "
        "this below its clean AUC (needs `deepfake-detect evaluate` of it first)",
    )
    parser.add_argument("--dry-run", action="store_true", help="only print what would change")


def run(args: argparse.Namespace) -> int:
    """Promote; prints what changed only after it changed. Exit 1 when no finished run
    matches, 2 on bad input or when no comparable run has a model."""
    from mlflow.exceptions import MlflowException

    from deepfake_detect.leaderboard.reader import collect
    from deepfake_detect.leaderboard.records import StoreError
    from deepfake_detect.registry.promotion import (
        apply_plan,
        check_robustness,
        plan_promotion,
        previous_alias,
    )
    from deepfake_detect.tracking.registered_models import RegistryError, validate_alias
    from deepfake_detect.tracking.store import error_line, resolve_tracking_uri, store_client

    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        validate_alias(args.alias)
        board = collect(uri, args.experiment, args.sweep, False, args.metric, "best")
        if not board.rows:
            print("error: no FINISHED runs match; nothing was changed", file=sys.stderr)
            return 1
        for warning in board.warnings[:5]:
            print(f"warning: {warning}", file=sys.stderr)
        client = store_client(uri)
        plan = plan_promotion(
            client, board, args.model_name, args.alias, args.dataset, args.image_size, args.force
        )
        target = f"{args.model_name}@{args.alias}"
        new = plan.candidate
        new_text = f"run {new.name} ({new.run_id[:8]}), {args.metric} {new.value:.4f}"
        old_text = "(none)"
        if plan.champion is not None:
            shown = f"{plan.champion_value:.4f}" if plan.champion_value is not None else "n/a"
            old_text = (
                f"v{plan.champion.version} (run {plan.champion.run_id[:8]}, {args.metric} {shown})"
            )
        if plan.action == "already":
            print(f"{target} already is v{plan.champion.version}: {new_text}; no change")
            return 0
        if plan.action == "keep":
            print(
                f"{target} stays {old_text}: the best comparable candidate, {new_text}, is not "
                "better; --force replaces it anyway"
            )
            return 0
        if args.max_robustness_drop is not None:
            robust = check_robustness(client, new, args.max_robustness_drop)
            print(
                f"robustness: {new.name} loses {robust.drop:.4f} AUC at JPEG quality 50 "
                f"(<= {args.max_robustness_drop:g}, evaluation run {robust.evaluation_run_id[:8]})"
            )
        if args.dry_run:
            print(
                f"[dry run] would move {target}: {old_text} -> {new_text} ({new.data.describe()})"
            )
            return 0
        version = apply_plan(client, plan, args.model_name, args.alias)
    except (StoreError, ValueError, RegistryError, MlflowException) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    if plan.version is None:
        print(f"registered run {new.run_id[:8]} as {args.model_name} v{version.version}")
    print(f"moved {target}: {old_text} -> v{version.version} ({new_text}, {new.data.describe()})")
    if plan.champion is not None and plan.champion.version != version.version:
        print(f"moved {args.model_name}@{previous_alias(args.alias)} -> v{plan.champion.version}")
    return 0
