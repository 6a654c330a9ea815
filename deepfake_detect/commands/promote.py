"""``deepfake-detect promote``: point an alias at the best finished run's model version."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from deepfake_detect.commands.options import add_run_selection

PREVIOUS_ALIAS = "previous"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the promote command."""
    add_run_selection(parser)
    parser.add_argument("--alias", default="champion", help="alias to move (default champion)")
    parser.add_argument(
        "--model-name",
        default="deepfake-detector",
        help="registered model name (default deepfake-detector)",
    )
    parser.add_argument("--dry-run", action="store_true", help="only print what would change")


@dataclass(frozen=True)
class Candidate:
    """The best run by the metric."""

    run_id: str
    name: str
    value: float


def best_candidate(args: argparse.Namespace) -> Candidate | None:
    """The top FINISHED run of the leaderboard (same ranking), or None."""
    from deepfake_detect.commands.leaderboard import collect

    board = collect(args.tracking_uri, args.experiment, args.sweep, False, args.metric, "best")
    if board.table.empty:
        return None
    top = board.table.iloc[0]
    return Candidate(str(top["run_id"]), str(top["model"]), float(top[args.metric]))


def run(args: argparse.Namespace) -> int:
    """Promote; prints old -> new with both metric values. Exit 1 when nothing to promote."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from deepfake_detect.leaderboard.records import StoreError
    from deepfake_detect.registry import versions
    from deepfake_detect.tracking.registered_models import RegistryError
    from deepfake_detect.tracking.store import resolve_tracking_uri

    try:
        candidate = best_candidate(args)
        if candidate is None:
            print("error: no FINISHED runs match; nothing was changed", file=sys.stderr)
            return 1
        client = MlflowClient(tracking_uri=resolve_tracking_uri(args.tracking_uri))
        exists = args.model_name in versions.registered_names(client)
        version = (
            versions.version_for_run(client, args.model_name, candidate.run_id) if exists else None
        )
        old = versions.alias_holder(client, args.model_name, args.alias) if exists else None
    except (StoreError, ValueError, RegistryError, MlflowException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    new_text = f"run {candidate.name} ({candidate.run_id[:8]}), {args.metric} {candidate.value:.4f}"
    if old is not None and version is not None and old.version == version.version:
        print(f"{args.model_name}@{args.alias} already is v{old.version}: {new_text}; no change")
        return 0
    old_text = "(none)"
    if old is not None:
        old_metric = client.get_run(old.run_id).data.metrics.get(args.metric)
        shown = f"{old_metric:.4f}" if old_metric is not None else "n/a"
        old_text = f"v{old.version} (run {old.run_id[:8]}, {args.metric} {shown})"
    prefix = "[dry run] would move" if args.dry_run else "moved"
    target = f"v{version.version}" if version else "a new version"
    print(f"{prefix} {args.model_name}@{args.alias}: {old_text} -> {target} ({new_text})")
    if old is not None:
        print(f"{prefix} {args.model_name}@{PREVIOUS_ALIAS} -> v{old.version}")
    if args.dry_run:
        return 0
    if version is None:
        version = versions.register_run(client, args.model_name, candidate.run_id)
        print(f"registered run {candidate.run_id[:8]} as {args.model_name} v{version.version}")
    if old is not None:
        client.set_registered_model_alias(args.model_name, PREVIOUS_ALIAS, old.version)
    client.set_registered_model_alias(args.model_name, args.alias, version.version)
    return 0
