"""Read runs through the MLflow API (tracking servers), with bulk metric history.

Runs, params and tags come from ``search_runs`` (one call per 1,000 runs); histories from the
server's bulk history endpoint (100 runs per call and key), not one call per run and metric.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from urllib.parse import urlparse

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from deepfake_detect.leaderboard.records import (
    History,
    RunRecord,
    check_sweep,
    choose_experiments,
)
from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import (
    EVALUATION,
    PARENT_TAG,
    PRUNED_TAG,
    RUN_TYPE_TAG,
    SWEEP,
)

HTTP_CHUNK = 100
BULK_HISTORY = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str = ""):
    """All active runs matching ``filter_string`` (paged, 1,000 per call)."""
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


def all_experiments(client: MlflowClient) -> list:
    """Every active experiment (paged: a server returns at most 1,000 per call)."""
    found, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def read_runs_api(
    uri: str, names: Sequence[str], sweep: str | None, include_failed: bool, keys: Sequence[str]
) -> list[RunRecord]:
    """Training runs of the named experiments (of one sweep), with histories of ``keys``."""
    client = store_client(uri)
    existing = {e.name: e.experiment_id for e in all_experiments(client)}
    experiments = choose_experiments(existing, names)
    ids = list(experiments)
    if sweep:
        parents = search_all(client, ids, f"tags.{RUN_TYPE_TAG} = '{SWEEP}'")
        check_sweep(sweep, [run.info.run_id for run in parents])
    filters = [f"tags.`{PARENT_TAG}` = '{sweep}'"] if sweep else []
    if not include_failed:
        filters.append("attributes.status = 'FINISHED'")
    runs = [
        run
        for run in search_all(client, ids, " and ".join(filters))
        if run.data.tags.get(RUN_TYPE_TAG) not in (SWEEP, EVALUATION)
    ]
    records = [
        RunRecord(
            run.info.run_id,
            run.info.run_name or run.info.run_id[:8],
            run.info.status,
            experiments[run.info.experiment_id],
            run.data.tags.get(PARENT_TAG, ""),
            dict(run.data.params),
            pruned=run.data.tags.get(PRUNED_TAG) == "true",
        )
        for run in runs
    ]
    # a run's latest metrics name every key it ever logged: no history calls for the others
    logged = {run.info.run_id: set(run.data.metrics) for run in runs}
    histories = fetch_histories(client, logged, keys)
    for record in records:
        record.history = histories.get(record.run_id, {})
    return records


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_histories(
    client: MlflowClient, logged: dict[str, set[str]], keys: Sequence[str]
) -> dict[str, History]:
    """run id -> key -> step -> value for the ``keys`` each run logged (``logged``: run id ->
    its metric keys): the bulk endpoint on servers, else per-run calls."""
    if urlparse(client.tracking_uri).scheme not in ("http", "https"):
        return {
            run_id: {
                key: {m.step: m.value for m in client.get_metric_history(run_id, key)}
                for key in keys
                if key in run_keys
            }
            for run_id, run_keys in logged.items()
        }
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    result: dict[str, History] = defaultdict(lambda: defaultdict(dict))
    # the client's own credentials: MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, TLS settings
    creds = get_default_host_creds(client.tracking_uri.rstrip("/"))
    for key in keys:
        for chunk in _chunks(
            [run_id for run_id, found in logged.items() if key in found], HTTP_CHUNK
        ):
            response = http_request(
                creds,
                BULK_HISTORY,
                "GET",
                params={"run_ids": list(chunk), "metric_key": key, "max_results": 2500},
            )
            response.raise_for_status()
            for metric in response.json().get("metrics", []):
                result[metric["run_id"]][key][int(metric.get("step", 0))] = float(metric["value"])
    return result
