"""Read runs and their full metric histories from a tracking store in bulk.

Runs, params and tags come from ``search_runs`` (one call per 1,000 runs). Histories come
from one SQL query per 500 runs on database stores (sqlite/postgresql/mysql), or from the
server's bulk history endpoint (100 runs per call and key) on HTTP stores: never one round
trip per run per metric.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from deepfake_detect.run_types import EVALUATION, PARENT_TAG, RUN_TYPE_TAG, SWEEP
from deepfake_detect.tracking import sqlite_path

History = dict[str, dict[int, float]]  # key -> step -> value
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SQL_CHUNK = 500
HTTP_CHUNK = 100


class StoreError(LookupError):
    """The store, an experiment or a sweep the user named does not exist."""


@dataclass
class RunRecord:
    """One run with everything the leaderboard needs."""

    run_id: str
    name: str
    status: str
    experiment: str
    parent_run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    history: History = field(default_factory=dict)


def open_client(uri: str) -> MlflowClient:
    """A client for an existing store; a missing SQLite file is an error, not a new store."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise StoreError(
            f"no tracking store at {db}; train a model first (`make demo`) "
            "or pass --tracking-uri / set MLFLOW_TRACKING_URI"
        )
    return MlflowClient(tracking_uri=uri)


def resolve_experiments(client: MlflowClient, names: Sequence[str]) -> dict[str, str]:
    """Experiment id -> name for ``names`` (all active experiments when empty)."""
    existing = {e.name: e.experiment_id for e in client.search_experiments()}
    if not names:
        return {eid: name for name, eid in existing.items()}
    missing = [name for name in names if name not in existing]
    if missing:
        raise StoreError(
            f"unknown experiment {', '.join(map(repr, missing))}; existing: "
            f"{', '.join(sorted(existing)) or '(none)'}"
        )
    return {existing[name]: name for name in names}


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str = ""):
    """All runs matching ``filter_string`` (paged, 1,000 per call)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def sweep_parents(client: MlflowClient, experiment_ids: list[str]) -> list[str]:
    """Run ids of the sweep parent runs in these experiments."""
    runs = search_all(client, experiment_ids, f"tags.{RUN_TYPE_TAG} = '{SWEEP}'")
    return [run.info.run_id for run in runs]


def read_runs(
    client: MlflowClient,
    experiments: dict[str, str],
    sweep: str | None,
    include_failed: bool,
    keys: Sequence[str],
) -> list[RunRecord]:
    """Training runs of the experiments (of one sweep if given), with histories of ``keys``."""
    experiment_ids = list(experiments)
    if sweep:
        parents = sweep_parents(client, experiment_ids)
        if sweep not in parents:
            raise StoreError(
                f"unknown sweep {sweep!r}; sweep runs here: {', '.join(parents) or '(none)'}"
            )
    filters = []
    if sweep:
        filters.append(f"tags.`{PARENT_TAG}` = '{sweep}'")
    if not include_failed:
        filters.append("attributes.status = 'FINISHED'")
    records = []
    for run in search_all(client, experiment_ids, " and ".join(filters)):
        if run.data.tags.get(RUN_TYPE_TAG) in (SWEEP, EVALUATION):
            continue
        records.append(
            RunRecord(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id[:8],
                status=run.info.status,
                experiment=experiments[run.info.experiment_id],
                parent_run_id=run.data.tags.get(PARENT_TAG, ""),
                params=dict(run.data.params),
                tags=dict(run.data.tags),
            )
        )
    histories = fetch_histories(client.tracking_uri, [r.run_id for r in records], keys)
    for record in records:
        record.history = histories.get(record.run_id, {})
    return records


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_histories(uri: str, run_ids: Sequence[str], keys: Sequence[str]) -> dict[str, History]:
    """run id -> key -> step -> value, for all ``keys`` of all ``run_ids``."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme in DB_SCHEMES:
        return _histories_sql(uri, run_ids, keys)
    if scheme in ("http", "https"):
        return _histories_http(uri, run_ids, keys)
    return _histories_client(uri, run_ids, keys)


def _histories_sql(uri: str, run_ids: Sequence[str], keys: Sequence[str]) -> dict[str, History]:
    import sqlalchemy

    result: dict[str, History] = defaultdict(lambda: defaultdict(dict))
    engine = sqlalchemy.create_engine(uri)
    query = sqlalchemy.text(
        "SELECT run_uuid, key, step, value, is_nan FROM metrics "
        "WHERE run_uuid IN :runs AND key IN :keys ORDER BY timestamp, step"
    ).bindparams(
        sqlalchemy.bindparam("runs", expanding=True), sqlalchemy.bindparam("keys", expanding=True)
    )
    try:
        with engine.connect() as connection:
            for chunk in _chunks(list(run_ids), SQL_CHUNK):
                rows = connection.execute(query, {"runs": list(chunk), "keys": list(keys)})
                for run_id, key, step, value, is_nan in rows:
                    # ordered by time: a re-logged step keeps its latest value
                    result[run_id][key][int(step)] = math.nan if is_nan else float(value)
    finally:
        engine.dispose()
    return result


def _histories_http(uri: str, run_ids: Sequence[str], keys: Sequence[str]) -> dict[str, History]:
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    result: dict[str, History] = defaultdict(lambda: defaultdict(dict))
    creds = MlflowHostCreds(uri.rstrip("/"))
    for chunk in _chunks(list(run_ids), HTTP_CHUNK):
        for key in keys:
            response = http_request(
                creds,
                "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                "GET",
                params={"run_ids": list(chunk), "metric_key": key, "max_results": 2500},
            )
            response.raise_for_status()
            for metric in response.json().get("metrics", []):
                result[metric["run_id"]][key][int(metric.get("step", 0))] = float(metric["value"])
    return result


def _histories_client(uri: str, run_ids: Sequence[str], keys: Sequence[str]) -> dict[str, History]:
    """Fallback for other stores: per-run history calls."""
    client = MlflowClient(tracking_uri=uri)
    result: dict[str, History] = {}
    for run_id in run_ids:
        result[run_id] = {
            key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in keys
        }
    return result
