"""Read runs straight from an MLflow database (sqlite/postgresql/mysql) in five queries.

Five set-based queries (experiments, runs, tags, params, metrics) however many runs there
are; no MLflow import, no per-run or per-metric round trips.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy
from sqlalchemy import bindparam, text

from deepfake_detect.leaderboard.records import (
    RunRecord,
    StoreError,
    check_sweep,
    choose_experiments,
)
from deepfake_detect.tracking.vocabulary import EVALUATION, PARENT_TAG, RUN_TYPE_TAG, SWEEP

_RUNS = text(
    "SELECT run_uuid, name, status, experiment_id FROM runs "
    "WHERE lifecycle_stage = 'active' AND experiment_id IN :experiments"
).bindparams(bindparam("experiments", expanding=True))
_TAGS = text(
    "SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
    "WHERE r.lifecycle_stage = 'active' AND r.experiment_id IN :experiments AND t.key IN :keys"
).bindparams(bindparam("experiments", expanding=True), bindparam("keys", expanding=True))
_PARAMS = text(
    "SELECT p.run_uuid, p.key, p.value FROM params p JOIN runs r ON r.run_uuid = p.run_uuid "
    "WHERE r.lifecycle_stage = 'active' AND r.experiment_id IN :experiments"
).bindparams(bindparam("experiments", expanding=True))
_METRICS = text(
    "SELECT m.run_uuid, m.key, m.step, m.value, m.is_nan FROM metrics m "
    "JOIN runs r ON r.run_uuid = m.run_uuid "
    "WHERE r.lifecycle_stage = 'active' AND r.experiment_id IN :experiments AND m.key IN :keys "
    "ORDER BY m.timestamp, m.step"
).bindparams(bindparam("experiments", expanding=True), bindparam("keys", expanding=True))


def read_runs_sql(
    uri: str, names: Sequence[str], sweep: str | None, include_failed: bool, keys: Sequence[str]
) -> list[RunRecord]:
    """Training runs of the named experiments (of one sweep), with histories of ``keys``."""
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as db:
            return _read(db, names, sweep, include_failed, keys)
    except sqlalchemy.exc.OperationalError as error:
        raise StoreError(f"{uri} is not a readable MLflow store ({error.orig})") from error
    finally:
        engine.dispose()


def _read(
    db, names: Sequence[str], sweep: str | None, include_failed: bool, keys: Sequence[str]
) -> list[RunRecord]:
    rows = db.execute(
        text("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'")
    )
    experiments = choose_experiments({name: str(eid) for eid, name in rows}, names)
    ids = [int(eid) for eid in experiments]
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for run_id, key, value in db.execute(
        _TAGS, {"experiments": ids, "keys": [RUN_TYPE_TAG, PARENT_TAG]}
    ):
        tags[run_id][key] = value
    check_sweep(sweep, [r for r, t in tags.items() if t.get(RUN_TYPE_TAG) == SWEEP])
    records: dict[str, RunRecord] = {}
    for run_id, name, status, experiment_id in db.execute(_RUNS, {"experiments": ids}):
        run_tags = tags.get(run_id, {})
        if run_tags.get(RUN_TYPE_TAG) in (SWEEP, EVALUATION):
            continue
        if (not include_failed and status != "FINISHED") or (
            sweep and run_tags.get(PARENT_TAG) != sweep
        ):
            continue
        records[run_id] = RunRecord(
            run_id,
            name or run_id[:8],
            status,
            experiments[str(experiment_id)],
            run_tags.get(PARENT_TAG, ""),
            {},
        )
    for run_id, key, value in db.execute(_PARAMS, {"experiments": ids}):
        if run_id in records:
            records[run_id].params[key] = value
    for run_id, key, step, value, is_nan in db.execute(
        _METRICS, {"experiments": ids, "keys": list(keys)}
    ):
        if run_id in records:
            # ordered by time: a re-logged step keeps its latest value
            records[run_id].history.setdefault(key, {})[int(step)] = (
                math.nan if is_nan else float(value)
            )
    return list(records.values())
