"""Read a tracking store's training runs (SQL for database stores, the API for servers) and
build the leaderboard from them."""

from __future__ import annotations

from collections.abc import Sequence

from deepfake_detect.leaderboard.records import RunRecord, StoreError
from deepfake_detect.leaderboard.selection import validate_metric, validate_selection
from deepfake_detect.leaderboard.table import Leaderboard, build_leaderboard
from deepfake_detect.tracking.store import (
    StoreNotFoundError,
    error_line,
    is_database_uri,
    redact,
    require_existing_store,
    resolve_tracking_uri,
)
from deepfake_detect.tracking.vocabulary import BEST_EPOCH_METRIC, EPOCH_KEYS, TEST_KEYS

# read with SQL (leaderboard/sql_reader.py); other stores (servers, MySQL, other databases)
# through the MLflow API
ROW_KEYS: tuple[str, ...] = (*EPOCH_KEYS, *TEST_KEYS)  # the metric columns of a row


def read_store(
    uri: str,
    experiments: Sequence[str],
    sweep: str | None,
    include_failed: bool,
    metric: str = "val_auc",
    selection: str = "best",
) -> list[RunRecord]:
    """Runs with the values of the table's metrics (database stores: only at the epoch each
    row reports, picked in the database by ``metric`` and ``selection``; servers: whole
    histories); a missing SQLite file is an error, never a new store."""
    try:
        require_existing_store(uri)
    except StoreNotFoundError as error:
        raise StoreError(str(error)) from error
    if is_database_uri(uri):
        from deepfake_detect.leaderboard.sql_reader import read_runs_sql

        return read_runs_sql(uri, experiments, sweep, include_failed, ROW_KEYS, metric, selection)
    import requests
    from mlflow.exceptions import MlflowException

    from deepfake_detect.leaderboard.api_reader import read_runs_api

    try:
        keys = [*ROW_KEYS, BEST_EPOCH_METRIC]
        return read_runs_api(uri, experiments, sweep, include_failed, keys)
    except (MlflowException, requests.RequestException) as error:
        raise StoreError(f"cannot read runs from {redact(uri)}: {error_line(error)}") from error


def collect(
    tracking_uri: str | None,
    experiments: list[str],
    sweep: str | None,
    include_failed: bool,
    metric: str,
    select: str,
) -> Leaderboard:
    """Read the store and build the table (raises StoreError/ValueError on bad input)."""
    validate_metric(metric)
    validate_selection(select)
    records = read_store(
        resolve_tracking_uri(tracking_uri),
        experiments,
        sweep,
        include_failed,
        metric,
        select,
    )
    return build_leaderboard(records, metric, select)
