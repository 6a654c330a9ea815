"""Hand a store's local artifacts to a tracking server's artifact proxy.

Runs logged straight to a database store (the project's SQLite file) record local artifact
paths (``file:///.../mlruns/artifacts/<run_id>/artifacts``), and so do their experiments. When
``mlflow server --serve-artifacts --artifacts-destination DEST`` later serves that database to a
team, clients on other hosts would read and write those paths on their own disks. This module
rewrites every local location in the database (experiments, runs, logged models, model
versions) as ``mlflow-artifacts:/...`` under DEST, moving folders that are not inside DEST
into it (``DEST/<experiment id>/<run id>``, ``DEST/<experiment id>/models/<model id>``). It never
overwrites a folder, and a plan interrupted half way is finished by running it again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

PROXY_SCHEME = "mlflow-artifacts:"
# the tables holding artifact locations, by their key column (model versions: name, version)
KEY_COLUMNS = {"experiments": "experiment_id", "runs": "run_uuid", "logged_models": "model_id"}


class ArtifactRootError(ValueError):
    """The store or destination cannot be re-pointed (the message says what to do)."""


def local_path(uri: str | None) -> Path | None:
    """The folder of a ``file://`` URI or plain path; None for anything remote."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).resolve()  # symlinks: one spelling per folder
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri).resolve()
    return None


def within(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or inside it."""
    return path == folder or folder in path.parents


def proxy_uri(path: Path, destination: Path) -> str:
    """``mlflow-artifacts:/<path relative to the destination>``."""
    relative = path.relative_to(destination).as_posix()
    return f"{PROXY_SCHEME}/{relative}" if relative != "." else f"{PROXY_SCHEME}/"


@dataclass
class Move:
    """One folder to move into the destination."""

    source: Path
    target: Path


@dataclass
class Plan:
    """Row updates per table and the folder moves they need."""

    destination: Path
    updates: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # table: rows
    moves: list[Move] = field(default_factory=list)

    def add(self, table: str, key: str, column: str, value: str) -> None:
        self.updates.setdefault(table, []).append((key, column, value))

    def count(self, table: str) -> int:
        return len({key for key, _, _ in self.updates.get(table, [])})


def _folder_of(uri_path: Path) -> Path:
    """A run's or model's own folder: the parent of its ``artifacts`` folder."""
    return uri_path.parent if uri_path.name == "artifacts" else uri_path


def _relocate(plan: Plan, path: Path, target_folder: Path) -> Path:
    """Where ``path`` (a run's or model's artifact location) lives after the plan."""
    if within(path, plan.destination):
        return path  # already served from there: re-point only
    folder = _folder_of(path)
    target = target_folder / folder.name
    plan.moves.append(Move(folder, target))
    return target / path.relative_to(folder) if path != folder else target


def make_plan(engine, destination: Path) -> Plan:
    """Every local location in the store, and where it goes under ``destination``."""
    import sqlalchemy as sa

    plan = Plan(destination.resolve())
    destination = plan.destination
    replaced: dict[Path, str] = {}  # old local location -> new proxy URI (for model versions)
    with engine.connect() as db:
        check_workspaces(db)
        experiments = db.execute(
            sa.text("SELECT experiment_id, artifact_location FROM experiments")
        ).all()
        for experiment_id, location in experiments:
            path = local_path(location)
            if path is None:
                continue
            new_root = path if within(path, destination) else destination / str(experiment_id)
            plan.add(
                "experiments",
                str(experiment_id),
                "artifact_location",
                proxy_uri(new_root, destination),
            )
        # runs go to DEST/<experiment>/<run id>, logged models to DEST/<experiment>/models/<id>
        for table, column, subfolder in (
            ("runs", "artifact_uri", ""),
            ("logged_models", "artifact_location", "models"),
        ):
            rows = db.execute(
                sa.text(f"SELECT {KEY_COLUMNS[table]}, experiment_id, {column} FROM {table}")
            ).all()
            for key, experiment_id, uri in rows:
                path = local_path(uri)
                if path is None:
                    continue
                new = _relocate(plan, path, destination / str(experiment_id) / subfolder)
                plan.add(table, key, column, proxy_uri(new, destination))
                replaced[path] = proxy_uri(new, destination)
        versions = db.execute(
            sa.text("SELECT name, version, source, storage_location FROM model_versions")
        ).all()
        for name, version, source, storage in versions:
            for column, value in (("source", source), ("storage_location", storage)):
                new_value = _replace_prefix(value, replaced)
                if new_value is not None:
                    plan.add("model_versions", f"{name}\0{version}", column, new_value)
    return plan


def _replace_prefix(value: str | None, replaced: dict[Path, str]) -> str | None:
    """The new URI of a local ``value`` inside a replaced location (the innermost); None if
    it is not local or in none of them."""
    path = local_path(value)
    if path is None:
        return None
    for old in sorted(replaced, key=lambda p: len(p.parts), reverse=True):
        if within(path, old):
            relative = path.relative_to(old).as_posix()
            return replaced[old] + ("" if relative == "." else "/" + relative)
    return None


def check_workspaces(db) -> None:
    """Only the default MLflow workspace: the proxy keeps other workspaces' artifacts under
    paths of their own, which this command does not write."""
    import sqlalchemy as sa

    columns = {column["name"] for column in sa.inspect(db).get_columns("experiments")}
    if "workspace" not in columns:
        return
    others = db.execute(
        sa.text("SELECT DISTINCT workspace FROM experiments WHERE workspace <> 'default'")
    ).scalars()
    names = sorted(str(name) for name in others)
    if names:
        raise ArtifactRootError(
            f"the store has experiments in MLflow workspaces {', '.join(names)}: artifacts move "
            "handles only the default workspace; move those artifacts by hand"
        )


def check_plan(plan: Plan) -> None:
    """Refuse a move onto an existing folder (a half-done earlier run is fine: its source is
    gone and its target is there), two folders moved to one place, and a destination inside a
    folder it would move."""
    targets: dict[Path, Path] = {}
    for move in plan.moves:
        if move.target in targets and targets[move.target] != move.source:
            raise ArtifactRootError(
                f"{targets[move.target]} and {move.source} would both move to {move.target}; "
                "rename one of the folders (and its location in the store) first"
            )
        targets[move.target] = move.source
        if not move.source.exists():
            continue
        if within(plan.destination, move.source):
            raise ArtifactRootError(
                f"the destination {plan.destination} is inside {move.source}, which would move "
                "into it: choose a destination outside the store's artifact folders"
            )
        if move.target.exists():
            raise ArtifactRootError(
                f"{move.target} exists already and {move.source} would be moved onto it; "
                "move one of them aside and run the command again"
            )


def apply_plan(engine, plan: Plan) -> int:
    """Move the folders, then rewrite the rows in one transaction; returns folders moved."""
    import sqlalchemy as sa

    check_plan(plan)
    moved = 0
    for move in plan.moves:
        if move.source.exists():
            move.target.parent.mkdir(parents=True, exist_ok=True)
            if move.target.exists():  # appeared since the check: never move into it
                raise ArtifactRootError(f"{move.target} appeared while moving; run it again")
            shutil.move(str(move.source), str(move.target))
            moved += 1
    with engine.begin() as db:
        for table, rows in plan.updates.items():
            for key, column, value in rows:
                if table == "model_versions":
                    name, version = key.split("\0")
                    db.execute(
                        sa.text(
                            f"UPDATE model_versions SET {column} = :value "
                            "WHERE name = :name AND version = :version"
                        ),
                        {"value": value, "name": name, "version": int(version)},
                    )
                else:
                    db.execute(
                        sa.text(
                            f"UPDATE {table} SET {column} = :value "
                            f"WHERE {KEY_COLUMNS[table]} = :key"
                        ),
                        {"value": value, "key": int(key) if table == "experiments" else key},
                    )
    return moved
