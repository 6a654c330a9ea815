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


class ArtifactRootError(ValueError):
    """The store or destination cannot be re-pointed (the message says what to do)."""


def local_path(uri: str | None) -> Path | None:
    """The folder of a ``file://`` URI or plain path; None for anything remote."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


def proxy_uri(path: Path, destination: Path) -> str:
    """``mlflow-artifacts:/<path relative to the destination>``."""
    relative = path.relative_to(destination).as_posix()
    return f"{PROXY_SCHEME}/{relative}" if relative != "." else f"{PROXY_SCHEME}/"


@dataclass
class Move:
    """One folder to move (``source`` is None when it is already inside the destination)."""

    source: Path | None
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
    destination = plan.destination
    if path == destination or destination in path.parents:
        return path  # already served from there: re-point only
    folder = _folder_of(path)
    target = target_folder / folder.name
    plan.moves.append(Move(folder, target))
    return target / path.relative_to(folder) if path != folder else target


def make_plan(engine, destination: Path) -> Plan:
    """Every local location in the store, and where it goes under ``destination``."""
    import sqlalchemy as sa

    plan = Plan(destination)
    replaced: dict[str, str] = {}  # old local URI prefix -> new proxy URI (for model versions)
    with engine.connect() as db:
        experiments = db.execute(
            sa.text("SELECT experiment_id, artifact_location FROM experiments")
        ).all()
        for experiment_id, location in experiments:
            path = local_path(location)
            if path is None:
                continue
            home = destination / str(experiment_id)
            new_root = path if destination in (path, *path.parents) else home
            plan.add(
                "experiments",
                str(experiment_id),
                "artifact_location",
                proxy_uri(new_root, destination),
            )
        runs = db.execute(sa.text("SELECT run_uuid, experiment_id, artifact_uri FROM runs")).all()
        for run_id, experiment_id, uri in runs:
            path = local_path(uri)
            if path is None:
                continue
            new = _relocate(plan, path, destination / str(experiment_id))
            plan.add("runs", run_id, "artifact_uri", proxy_uri(new, destination))
            replaced[uri] = proxy_uri(new, destination)
        models = db.execute(
            sa.text("SELECT model_id, experiment_id, artifact_location FROM logged_models")
        ).all()
        for model_id, experiment_id, uri in models:
            path = local_path(uri)
            if path is None:
                continue
            new = _relocate(plan, path, destination / str(experiment_id) / "models")
            plan.add("logged_models", model_id, "artifact_location", proxy_uri(new, destination))
            replaced[uri] = proxy_uri(new, destination)
        versions = db.execute(
            sa.text("SELECT name, version, source, storage_location FROM model_versions")
        ).all()
        for name, version, source, storage in versions:
            for column, value in (("source", source), ("storage_location", storage)):
                new_value = _replace_prefix(value, replaced)
                if new_value is not None:
                    plan.add("model_versions", f"{name}\0{version}", column, new_value)
    return plan


def _replace_prefix(value: str | None, replaced: dict[str, str]) -> str | None:
    """``value`` with the longest replaced location it starts with swapped; None if none."""
    if not value:
        return None
    for old in sorted(replaced, key=len, reverse=True):
        if value == old or value.startswith(old.rstrip("/") + "/"):
            return replaced[old] + value[len(old) :]
    return None


def check_plan(plan: Plan) -> None:
    """Refuse a move onto an existing folder (a half-done earlier run is fine: its source is
    gone and its target is there)."""
    for move in plan.moves:
        if move.source is not None and move.source.exists() and move.target.exists():
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
        if move.source is not None and move.source.exists():
            move.target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(move.source), str(move.target))
            moved += 1
    keys = {
        "experiments": "experiment_id = :key",
        "runs": "run_uuid = :key",
        "logged_models": "model_id = :key",
    }
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
                        sa.text(f"UPDATE {table} SET {column} = :value WHERE {keys[table]}"),
                        {"value": value, "key": int(key) if table == "experiments" else key},
                    )
    return moved
