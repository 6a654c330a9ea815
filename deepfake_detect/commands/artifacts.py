"""``deepfake-detect artifacts move --to DEST``: before a tracking server serves a store that
local runs wrote (the project's SQLite file), hand its artifacts to the server's proxy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfake_detect.commands.options import add_tracking_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``artifacts move``."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    move = actions.add_parser(
        "move",
        help="re-point local artifact locations to a server's artifact proxy, moving folders "
        "into its --artifacts-destination (run it on the database, with the server stopped)",
    )
    move.add_argument(
        "--to",
        type=Path,
        required=True,
        metavar="DEST",
        help="the folder the server serves (`mlflow server --artifacts-destination DEST`, "
        "`make server ARTIFACTS=DEST`)",
    )
    move.add_argument("--dry-run", action="store_true", help="only print what would change")
    add_tracking_options(move)


def run(args: argparse.Namespace) -> int:
    import sqlalchemy

    from deepfake_detect.tracking.artifact_roots import ArtifactRootError, apply_plan, make_plan
    from deepfake_detect.tracking.store import (
        StoreNotFoundError,
        error_line,
        is_database_uri,
        redact,
        require_existing_store,
        resolve_tracking_uri,
    )

    uri = resolve_tracking_uri(args.tracking_uri)
    if not is_database_uri(uri):
        print(
            f"error: artifacts move rewrites the database a server serves; give that database "
            f"(--tracking-uri sqlite:///... or postgresql://...), not {redact(uri)}",
            file=sys.stderr,
        )
        return 2
    destination = args.to.expanduser().resolve()
    try:
        require_existing_store(uri)
        engine = sqlalchemy.create_engine(uri)
        with engine.connect() as db:
            running = (
                db.execute(
                    sqlalchemy.text(
                        "SELECT run_uuid FROM runs WHERE status IN ('RUNNING', 'SCHEDULED')"
                    )
                )
                .scalars()
                .all()
            )
        if running:
            raise ArtifactRootError(
                f"{len(running)} run(s) are RUNNING or SCHEDULED ({', '.join(running[:3])}): their "
                "artifacts would move under them; wait for them or `deepfake-detect runs reap`"
            )
        plan = make_plan(engine, destination)
        counts = ", ".join(
            f"{plan.count(table)} {table.replace('_', ' ')}"
            for table in ("experiments", "runs", "logged_models", "model_versions")
        )
        if not plan.updates:
            print(f"nothing to do: no local artifact locations in {redact(uri)}")
            return 0
        if args.dry_run:
            for move in plan.moves:
                print(f"would move {move.source} -> {move.target}")
            print(f"would re-point {counts} to {destination} (mlflow-artifacts:/)")
            return 0
        moved = apply_plan(engine, plan)
    except (
        ArtifactRootError,
        StoreNotFoundError,
        sqlalchemy.exc.SQLAlchemyError,
        OSError,
    ) as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2
    print(
        f"re-pointed {counts} to mlflow-artifacts:/ ({moved} folders moved into {destination}); "
        f"from now on use this store only through a server with --serve-artifacts "
        f"--artifacts-destination {destination} (make server BACKEND_URI=... ARTIFACTS=...)"
    )
    return 0
