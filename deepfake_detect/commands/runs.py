"""``deepfake-detect runs list|reap``: which runs are alive, stopped or resumable; close the
ones whose process is gone."""

from __future__ import annotations

import argparse
import sys

from deepfake_detect.commands.options import (
    add_run_filters,
    add_tracking_options,
    format_age,
    positive_int,
)

DEFAULT_STALE_AFTER = "30m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``runs list`` and ``runs reap``, with the run selection they share."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="status, last epoch, heartbeat age and resumability of recent runs"
    )
    reaping = actions.add_parser(
        "reap", help="mark RUNNING runs without a recent heartbeat KILLED (process gone)"
    )
    for action in (listing, reaping):
        add_tracking_options(action)
        add_run_filters(action)
        action.add_argument("--run", help="only this run id")
    listing.add_argument(
        "--status",
        action="append",
        choices=("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED"),
        help="only runs with this status (repeatable)",
    )
    listing.add_argument(
        "--limit", type=positive_int, default=50, help="newest runs shown (default 50)"
    )
    reaping.add_argument(
        "--stale-after",
        default=DEFAULT_STALE_AFTER,
        help=f"heartbeat age that counts as gone: 90s, 30m, 2h, 1d (default {DEFAULT_STALE_AFTER})",
    )
    reaping.add_argument("--dry-run", action="store_true", help="only print what would be reaped")


def _select(
    client,
    experiments: list[str],
    sweep: str | None,
    statuses: list[str] | None,
    limit: int,
    run_id: str | None = None,
):
    """Runs of the named (or all active) experiments, newest first."""
    if run_id:
        run = client.get_run(run_id)
        return [run] if not statuses or run.info.status in statuses else []
    from deepfake_detect.tracking.vocabulary import PARENT_TAG

    if experiments:
        found = [client.get_experiment_by_name(name) for name in experiments]
        missing = [name for name, exp in zip(experiments, found, strict=True) if exp is None]
        if missing:
            raise ValueError(f"no experiment named {', '.join(map(repr, missing))}")
        ids = [exp.experiment_id for exp in found]
    else:
        ids = [exp.experiment_id for exp in client.search_experiments()]
    sweep_clause = f"tags.`{PARENT_TAG}` = '{sweep}'" if sweep else ""
    runs = []
    for status in sorted(set(statuses or [None]), key=str):  # the limit counts matches
        clauses = [c for c in (sweep_clause, status and f"attributes.status = '{status}'") if c]
        runs += client.search_runs(
            ids, " and ".join(clauses), order_by=["attributes.start_time DESC"], max_results=limit
        )
    runs.sort(key=lambda run: run.info.start_time, reverse=True)
    return runs[:limit]


def run(args: argparse.Namespace) -> int:
    """List or reap; exit 2 on bad input or a store error."""
    import time

    from mlflow.exceptions import MlflowException

    from deepfake_detect.tracking.run_state import (
        parse_duration,
        reap,
        resumable_once_stopped,
        run_state,
    )
    from deepfake_detect.tracking.store import (
        StoreNotFoundError,
        require_existing_store,
        resolve_tracking_uri,
        store_client,
    )

    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        require_existing_store(uri)
        client = store_client(uri)
        if args.action == "list":
            runs = _select(client, args.experiment, args.sweep, args.status, args.limit, args.run)
        else:
            stale_after = parse_duration(args.stale_after)
            runs = _select(client, args.experiment, args.sweep, ["RUNNING"], 50000, args.run)
            runs = reap(client, runs, stale_after, args.dry_run)
            if not args.dry_run:  # show them as they are now: KILLED, resumable or not
                runs = [client.get_run(r.info.run_id) for r in runs]
    except (StoreNotFoundError, MlflowException, ValueError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    now = time.time()
    states = [run_state(r, now) for r in runs]
    would_resume = {r.info.run_id: resumable_once_stopped(r) for r in runs}
    if args.action == "reap":
        verb = "would mark" if args.dry_run else "marked"
        print(
            f"{verb} {len(states)} run(s) KILLED (no heartbeat for {args.stale_after}, or "
            "their process on this host is gone)"
        )
    if not states:
        if args.action == "list":
            print("no runs match")
        return 0
    header = ("run_id", "name", "type", "status", "epoch", "heartbeat", "resumable", "parent")
    rows = [
        (
            s.run_id,
            s.name[:60],
            s.run_type,
            s.status,
            s.last_epoch or "-",
            format_age(s.heartbeat_age) if s.status == "RUNNING" else "-",
            "yes" if s.resumable or (args.action == "reap" and would_resume[s.run_id]) else "no",
            s.parent[:8] or "-",
        )
        for s in states
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0
