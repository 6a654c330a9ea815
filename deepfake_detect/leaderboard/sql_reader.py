"""Read runs straight from an MLflow database (SQLite, PostgreSQL), the best epoch picked
inside the database.

Set-based queries, no MLflow import. The database returns a few aggregates per run (a window
function over the ranking metric, ``best_epoch`` and ``train_loss`` only), Python applies
:func:`selection.pick_epoch` to them, and only the chosen epoch's values (pivoted to one row
per run), the test values and the params that differ between runs come back: the cost grows
with runs, not with epochs x metrics. The chosen (run, epoch) pairs go into a temporary table
that the value and param queries join; where the connection may not create one (a read-only
role, a hot standby) they are bound into the queries instead, 500 runs a query (slower).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from deepfake_detect.leaderboard.records import (
    ALWAYS_READ_PARAMS,
    RunRecord,
    StoreError,
    check_sweep,
    choose_experiments,
)
from deepfake_detect.leaderboard.selection import EPOCH_KEY, EpochFacts, as_epoch, pick_epoch
from deepfake_detect.leaderboard.sql_connection import Connection, Database, DatabaseError
from deepfake_detect.tracking.store import redact
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    EVALUATION,
    PARENT_TAG,
    PRUNED_TAG,
    RUN_TYPE_TAG,
    SWEEP,
    TEST_KEYS,
    higher_is_better,
)

_ACTIVE_RUNS = "r.lifecycle_stage = 'active' AND r.experiment_id IN :experiments"
_RUNS = f"SELECT r.run_uuid, r.name, r.status, r.experiment_id FROM runs r WHERE {_ACTIVE_RUNS}"
_TAGS = (
    "SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
    f"WHERE {_ACTIVE_RUNS} AND t.key IN :keys"
)
# The per-run aggregates the epoch rule needs. They scan one metric key each through
# MLflow's (key, ...) primary key, for every run of the store (rows of other runs are dropped
# in Python; a per-run index lookup was far slower without planner statistics).
_LAST_STEPS = (
    "SELECT run_uuid, key, MAX(step) FROM metrics WHERE key IN :keys GROUP BY run_uuid, key"
)
_MODEL_EPOCHS = (  # ordered: the latest logged best_epoch comes last
    "SELECT run_uuid, value, is_nan FROM metrics WHERE key = :key ORDER BY step, timestamp, value"
)
# the best step of the ranking metric per run: NaN last, ties to the earliest step ({order} is
# the metric's direction) over {rows}: each step's latest value (newest timestamp, then the
# larger value), for stores where some step was logged twice
_BEST_STEPS = """
SELECT run_uuid, step FROM (
  SELECT run_uuid, step, is_nan,
         ROW_NUMBER() OVER (PARTITION BY run_uuid ORDER BY is_nan ASC, value {order}, step ASC)
           AS position
  FROM {rows}
) ranked WHERE position = 1 AND NOT is_nan
"""
# the same from per-run aggregates over all the metric's rows (cheaper than ranking them),
# and whether a run logged some step twice: the store's best steps are then ranked as above
_GROUPED_BEST_STEPS = """
SELECT m.run_uuid, MIN(m.step), MAX(b.relogged) FROM metrics m JOIN (
  SELECT run_uuid, {aggregate}(CASE WHEN NOT is_nan THEN value END) AS best,
         CASE WHEN COUNT(*) > COUNT(DISTINCT step) THEN 1 ELSE 0 END AS relogged
  FROM metrics WHERE key = :key GROUP BY run_uuid
) b ON b.run_uuid = m.run_uuid AND m.value = b.best
WHERE m.key = :key AND NOT m.is_nan GROUP BY m.run_uuid
"""
_LATEST_ROWS = """(
    SELECT run_uuid, step, value, is_nan,
           ROW_NUMBER() OVER (PARTITION BY run_uuid, step ORDER BY timestamp DESC, value DESC)
             AS newest
    FROM metrics WHERE key = :key
  ) latest WHERE newest = 1"""
CHUNK = 500  # runs per values query when they are bound (2 parameters each)
VALUE_WORKERS = 2  # connections reading values at once (this machine and CI have 2 cores)
_CHOSEN = "dfd_leaderboard_rows"  # the temporary table of exported runs and their row epochs
DEFAULT_WORKSPACE = "default"  # mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME
MIGRATIONS = ("store", "db_migrations", "versions")  # inside the mlflow package
# ``revision = "ae8bbe7743c9"`` / ``down_revision = None | "..." | ("...", "...")`` in a script
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.M)


def _values_query(keys: Sequence[str], bound_runs: int | None) -> str:
    """One row per chosen run: how many rows and distinct keys made it (more rows than keys:
    a step was logged twice), then its values of ``keys`` (bound as ``key<i>``) at its row
    epoch (NaN as NULL). The runs come from the temporary table, or when ``bound_runs`` is a
    number from that many bound ``run<i>``/``step<i>`` pairs. CROSS JOIN: SQLite walks the
    chosen runs and seeks MLflow's (run_uuid, key, step) index."""
    prefix, source = "", _CHOSEN
    if bound_runs is not None:
        pairs = ", ".join(f"(:run{i}, :step{i})" for i in range(bound_runs))
        prefix, source = f"WITH chosen (run_uuid, step) AS (VALUES {pairs}) ", "chosen"
    pivot = ", ".join(
        f"MAX(CASE WHEN m.key = :key{i} AND NOT m.is_nan THEN m.value END)"
        for i in range(len(keys))
    )
    return (
        f"{prefix}SELECT c.run_uuid, COUNT(*), COUNT(DISTINCT m.key), {pivot} "
        f"FROM {source} c CROSS JOIN metrics m "
        "WHERE m.run_uuid = c.run_uuid AND m.step = c.step AND m.key IN :keys "
        "GROUP BY c.run_uuid"
    )


# runs with a re-logged step: their rows, oldest first (the latest value wins)
_RELOGGED_VALUES = (
    "SELECT m.run_uuid, m.step, m.key, m.value, m.is_nan FROM metrics m "
    "WHERE m.run_uuid IN :runs AND m.key IN :keys ORDER BY m.timestamp, m.value"
)


def _param_queries(table: bool) -> tuple[str, str]:
    """Over the chosen runs (the temporary table) or else all the experiments' runs: which
    param keys vary or are missing somewhere (key, count, distinct), and those keys' values."""
    runs = (
        f"JOIN {_CHOSEN} r ON r.run_uuid = p.run_uuid WHERE 1 = 1"
        if table
        else f"JOIN runs r ON r.run_uuid = p.run_uuid WHERE {_ACTIVE_RUNS}"
    )
    spread = f"SELECT p.key, COUNT(*), COUNT(DISTINCT p.value) FROM params p {runs} GROUP BY p.key"
    values = f"SELECT p.run_uuid, p.key, p.value FROM params p {runs} AND p.key IN :keys"
    return spread, values


def read_runs_sql(
    uri: str,
    names: Sequence[str],
    sweep: str | None,
    include_failed: bool,
    keys: Sequence[str],
    metric: str = "val_auc",
    selection: str = "best",
) -> list[RunRecord]:
    """Training runs of the named experiments (of one sweep), each with the values of ``keys``
    at the epoch its row reports (ranked by ``metric``, ``selection`` best or last) and the
    params that tell the runs apart."""
    database = Database(uri)
    try:
        with database.connect() as db, ThreadPoolExecutor(1) as pool:
            check_schema(db, uri)
            # `best` rows: the store-wide epoch aggregates on a second connection while this
            # one reads the runs (`last` rows need none)
            pending = None
            if selection == "best":
                pending = pool.submit(_epoch_aggregates, database, metric)
            records, experiment_ids, runs_read = _read_runs(db, names, sweep, include_failed)
            if records:
                aggregates = pending.result() if pending else EpochAggregates({}, {})
                _choose_epochs(db, records, aggregates, metric, selection)
                _read_values(database, db, records, keys)
                table = _create_chosen_table(db, list(records.values()))
                _read_params(db, records, experiment_ids, runs_read, table)
            return list(records.values())
    except DatabaseError as error:  # its message is the driver's first line
        raise StoreError(f"{redact(uri)} is not a readable MLflow store ({error})") from error
    finally:
        database.close()


def supported_schema() -> str:
    """The MLflow database schema revision these queries are written for: the head of the
    installed MLflow's (pinned in pyproject.toml) migrations, read from their source text
    (importing ``mlflow.store.db`` costs seconds, more than this whole export should)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in _migration_scripts():
        found = _script_revisions(script)
        if found is None:  # a layout this parser does not know: ask MLflow itself
            return _mlflow_schema_head()
        if found[0] is not None:
            revisions.add(found[0])
            parents.update(found[1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else _mlflow_schema_head()


def _script_revisions(script: Path) -> tuple[str | None, set[str]] | None:
    """``(revision, down revisions)`` of one migration script; ``(None, set())`` for a file that
    is not a migration; None when its lines are not the literal one-line form this reads."""
    found = dict(_REVISION_LINE.findall(script.read_text(encoding="utf-8")))
    if "revision" not in found:
        return None, set()
    try:
        revision = ast.literal_eval(found["revision"])
        parent = ast.literal_eval(found.get("down_revision", "None"))
    except (SyntaxError, ValueError):  # a multi-line tuple, a name, an expression
        return None
    parents = [parent] if isinstance(parent, str) else list(parent or ())
    if not isinstance(revision, str) or not all(isinstance(p, str) for p in parents):
        return None
    return revision, set(parents)


def _mlflow_schema_head() -> str:
    """The head revision as MLflow computes it (seconds of imports: the fallback only)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _migration_scripts() -> list[Path]:
    """The installed MLflow's Alembic migration scripts, found without importing MLflow."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations)), *MIGRATIONS)
    return sorted(folder.glob("*.py"))


def check_schema(db: Connection, uri: str) -> None:
    """Refuse a store whose schema is not the supported one: the queries read MLflow's own
    tables, which change between versions."""
    revision = db.rows("SELECT version_num FROM alembic_version")
    found = revision[0][0] if revision else None  # an empty table: no revision at all
    expected = supported_schema()
    if found != expected:
        raise StoreError(
            f"{redact(uri)} has MLflow schema revision {found}; "
            f"this leaderboard reads revision {expected} (MLflow {_mlflow_version()}, pinned "
            "mlflow>=3.17,<3.19): upgrade the store with `mlflow db upgrade URI` (after a "
            "backup) or export through a tracking server of its version (--tracking-uri http://...)"
        )


def _mlflow_version() -> str:
    """The installed MLflow's version (``mlflow`` or ``mlflow-skinny``), or "unknown"."""
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "unknown"


def current_workspace() -> str:
    """The MLflow workspace this reader looks in (``MLFLOW_WORKSPACE``, else ``default``):
    experiment names are unique only within a workspace. MLflow's own rule
    (``resolve_entity_workspace_name``) read without importing MLflow: a command-line export
    has no request workspace bound."""
    return os.environ.get("MLFLOW_WORKSPACE", "").strip() or DEFAULT_WORKSPACE


def _read_runs(
    db: Connection, names: Sequence[str], sweep: str | None, include_failed: bool
) -> tuple[dict[str, RunRecord], list[int], int]:
    """The exported runs (not yet with values), the experiment ids read and how many active
    runs they hold."""
    rows = db.rows(
        "SELECT experiment_id, name FROM experiments "
        "WHERE lifecycle_stage = 'active' AND workspace = :workspace",
        {"workspace": current_workspace()},
    )
    experiments = choose_experiments({name: str(eid) for eid, name in rows}, names)
    ids = [int(eid) for eid in experiments]
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for run_id, key, value in db.rows(
        _TAGS,
        {"experiments": ids, "keys": [RUN_TYPE_TAG, PARENT_TAG, PRUNED_TAG]},
    ):
        tags[run_id][key] = value
    check_sweep(sweep, [r for r, t in tags.items() if t.get(RUN_TYPE_TAG) == SWEEP])
    records: dict[str, RunRecord] = {}
    runs_read = 0
    for run_id, name, status, experiment_id in db.rows(_RUNS, {"experiments": ids}):
        runs_read += 1
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
            pruned=run_tags.get(PRUNED_TAG) == "true",
            preselected=True,
        )
    return records, ids, runs_read


@dataclass(frozen=True)
class EpochAggregates:
    """What the database says about every run's epochs, before the runs are known: its
    latest logged ``best_epoch`` (None where NaN) and, for ``best`` rows, the step where the
    ranking metric is best."""

    model_epochs: dict[str, int | None]
    best_steps: dict[str, int]


def _epoch_aggregates(database: Database, metric: str) -> EpochAggregates:
    """The per-run aggregates ``best`` rows may need, for all runs of the store, on a
    connection of its own (runs of other experiments are dropped later). The ranking metric's
    best steps are read even where every run logged ``best_epoch`` (unknown until the runs
    are read): a scan of one metric key that overlaps the main connection's reads."""
    model_epochs: dict[str, int | None] = {}
    best: dict[str, int] = {}
    with database.connect() as db:
        for run_id, value, is_nan in db.rows(_MODEL_EPOCHS, {"key": BEST_EPOCH_METRIC}):
            model_epochs[run_id] = None if is_nan else as_epoch(value)
        if metric not in TEST_KEYS:
            higher = higher_is_better(metric)
            grouped = _GROUPED_BEST_STEPS.format(aggregate="MAX" if higher else "MIN")
            rows = db.rows(grouped, {"key": metric})
            if any(relogged for _, _, relogged in rows):
                ranked = _BEST_STEPS.format(order="DESC" if higher else "ASC", rows=_LATEST_ROWS)
                rows = db.rows(ranked, {"key": metric})
            best = {row[0]: int(row[1]) for row in rows}
    return EpochAggregates(model_epochs, best)


def _choose_epochs(
    db: Connection,
    records: dict[str, RunRecord],
    aggregates: EpochAggregates,
    metric: str,
    selection: str,
) -> None:
    """Each record's row epoch from the database's aggregates; the last steps are queried only
    where the rule needs them (``--select last``, test metrics, runs without a finite value)."""
    model_epochs, best = aggregates.model_epochs, aggregates.best_steps
    unresolved = [r for r in records if model_epochs.get(r) is None]
    last: dict[tuple[str, str], int] = {}
    if any(run not in best for run in unresolved):  # last epochs: for `last` and fallbacks
        keys = sorted({metric, EPOCH_KEY})
        last = {(run, key): int(step) for run, key, step in db.rows(_LAST_STEPS, {"keys": keys})}
    for run_id, record in records.items():
        facts = EpochFacts(
            model_epoch=model_epochs.get(run_id),
            last_epoch=last.get((run_id, EPOCH_KEY)),
            metric_last=last.get((run_id, metric)),
            metric_best=best.get(run_id),
        )
        record.epoch = pick_epoch(facts, metric, selection)


def _create_chosen_table(db: Connection, records: Sequence[RunRecord]) -> bool:
    """The connection's temporary table of ``records`` and their epochs; False where it may
    not create one (read-only transaction): the queries then bind the runs instead."""
    if not records:
        return False
    try:  # a pooled SQLite connection may still hold the table (its DDL is not rolled back)
        db.run(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_CHOSEN} "
            "(run_uuid VARCHAR(32) PRIMARY KEY, step BIGINT)"
        )
        db.run(f"DELETE FROM {_CHOSEN}")
        db.insert_many(
            f"INSERT INTO {_CHOSEN} (run_uuid, step) VALUES (?, ?)",
            [(r.run_id, r.epoch) for r in records],
        )
    except DatabaseError:
        db.rollback()
        return False
    return True


def _value_rows(
    database: Database, chosen: Sequence[RunRecord], keys: list[str]
) -> list[Sequence[object]]:
    """The pivoted value rows of ``chosen`` (see :func:`_values_query`), on a connection of
    their own: over its temporary table in one query, else ``CHUNK`` bound runs a query."""
    bound_keys = {"keys": keys, **{f"key{i}": key for i, key in enumerate(keys)}}
    with database.connect() as db:
        if _create_chosen_table(db, chosen):
            return db.rows(_values_query(keys, None), bound_keys)
        rows = []
        for start in range(0, len(chosen), CHUNK):
            chunk = chosen[start : start + CHUNK]
            bound = dict(bound_keys)
            for i, record in enumerate(chunk):
                bound[f"run{i}"], bound[f"step{i}"] = record.run_id, record.epoch
            rows += db.rows(_values_query(keys, len(chunk)), bound)
        return rows


def _read_values(
    database: Database,
    db: Connection,
    records: dict[str, RunRecord],
    keys: Sequence[str],
) -> None:
    """The values of ``keys`` at each record's epoch. Many runs are split between
    ``VALUE_WORKERS`` connections queried at once (SQLite works outside the GIL, a server
    serves each); a step logged twice keeps its latest value (those few runs' rows are read
    again, ``CHUNK`` runs a query, ordered by time)."""
    keys = list(keys)
    chosen = [record for record in records.values() if record.epoch is not None]
    if not chosen:  # no run has an epoch yet (e.g. --include-failed during the first epoch)
        return
    workers = VALUE_WORKERS if len(chosen) >= 2 * CHUNK else 1
    parts = [chosen[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda part: _value_rows(database, part, keys), parts))
    relogged = []
    for run_id, count, distinct, *values in (row for part in results for row in part):
        records[run_id].values = {
            key: float(value) for key, value in zip(keys, values, strict=True) if value is not None
        }
        if count > distinct:
            relogged.append(records[run_id])
    for start in range(0, len(relogged), CHUNK):  # rows of all epochs: keep the chosen one
        chunk = {record.run_id: record for record in relogged[start : start + CHUNK]}
        query = {"runs": list(chunk), "keys": keys}
        for run_id, step, key, value, is_nan in db.rows(_RELOGGED_VALUES, query):
            if step == chunk[run_id].epoch:
                chunk[run_id].values[key] = math.nan if is_nan else float(value)


def _read_params(
    db: Connection,
    records: dict[str, RunRecord],
    experiment_ids: list[int],
    runs_read: int,
    table: bool,
) -> None:
    """Only params whose values are not the same for every run read (the chosen ones from
    the temporary table, else all ``runs_read`` active runs of the experiments) plus the swept
    and the monitor params: the rest cannot tell rows apart, and 16k runs x 60 params is a lot.
    (A key that varies across the experiments but not the exported runs is harmless: the
    table keeps only what differs between its rows.)"""
    spread, values = _param_queries(table)
    total = len(records) if table else runs_read
    experiments = {} if table else {"experiments": experiment_ids}
    wanted = set(ALWAYS_READ_PARAMS)
    for key, count, distinct in db.rows(spread, experiments):
        if distinct > 1 or count < total:
            wanted.add(key)
    for run_id, key, value in db.rows(values, {**experiments, "keys": sorted(wanted)}):
        if run_id in records:
            records[run_id].params[key] = value
