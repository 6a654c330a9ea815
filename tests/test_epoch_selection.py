"""The SQL reader picks each row's epoch inside the database; it must agree with the Python
rule applied to whole histories on any history: NaN, ties, missing and re-logged epochs,
runs without ``best_epoch`` or without any epoch, ascending metrics, test metrics, ``last``."""

from __future__ import annotations

import math
import os
import random

import pandas as pd
import pytest
from mlflow.entities import Metric

from deepfake_detect.leaderboard.api_reader import read_runs_api
from deepfake_detect.leaderboard.reader import ROW_KEYS
from deepfake_detect.leaderboard.selection import EpochFacts, facts_from_history, pick_epoch
from deepfake_detect.leaderboard.sql_reader import read_runs_sql
from deepfake_detect.leaderboard.table import build_leaderboard
from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import BEST_EPOCH_METRIC
from tests.leaderboard_fixtures import random_run_metrics

POSTGRES_ENV = "DFD_TEST_POSTGRES_URI"  # a server URI whose user may CREATE DATABASE


@pytest.fixture(scope="module")
def scratch_postgres():
    """A fresh PostgreSQL database for the module (dropped after), or a skip."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"set {POSTGRES_ENV}=postgresql://user:pw@host/postgres to run on PostgreSQL")
    import sqlalchemy

    name = f"dfd_selection_{os.getpid()}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield str(sqlalchemy.engine.make_url(server).set(database=name).render_as_string(False))
    with admin.connect() as db:
        db.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def random_store(request, tmp_path_factory) -> str:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('selection') / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("scratch_postgres")
    client = store_client(uri)
    rng = random.Random(20261129)
    for experiment, runs in (("random", 40), ("other", 8)):
        experiment_id = client.create_experiment(experiment)
        for index in range(runs):
            run_id = client.create_run(experiment_id, run_name=f"run{index:02d}").info.run_id
            for batch in random_run_metrics(rng):
                for start in range(0, len(batch), 900):
                    client.log_batch(run_id, metrics=batch[start : start + 900])
            client.set_terminated(run_id, rng.choice(["FINISHED", "FINISHED", "FAILED"]))
            if experiment == "other" and index == 0:
                client.delete_run(run_id)  # deleted runs are never exported
    return uri


@pytest.mark.parametrize("selection", ["best", "last"])
@pytest.mark.parametrize("metric", ["val_auc", "val_loss", "train_fn", "test_auc", "test_loss"])
def test_sql_selection_equals_python_rule_on_random_histories(random_store, metric, selection):
    for names, include_failed, expected in ((["random"], True, 40), ([], False, None)):
        args = (random_store, names, None, include_failed)
        whole = read_runs_api(*args, [*ROW_KEYS, BEST_EPOCH_METRIC])
        in_sql = read_runs_sql(*args, ROW_KEYS, metric, selection)
        assert all(record.preselected for record in in_sql)
        assert not any(record.preselected for record in whole)
        reference = build_leaderboard(whole, metric, selection).table
        picked = build_leaderboard(in_sql, metric, selection).table
        assert len(picked) == (expected or len(reference)) and len(picked) > 20
        assert picked["epoch"].isna().sum() > 0  # runs without epochs are in the test
        pd.testing.assert_frame_equal(picked, reference)


def test_runs_without_any_epoch_are_rows_without_values(store_uri):
    """--include-failed during a sweep's first epoch: no exported run has an epoch yet."""
    client = store_client(store_uri)
    experiment_id = client.create_experiment("starting")
    running = client.create_run(experiment_id, run_name="starting").info.run_id
    client.log_batch(running, metrics=[Metric("data_load_seconds", 1.0, 1000, 0)])
    for reader, keys in ((read_runs_sql, ROW_KEYS), (read_runs_api, ROW_KEYS)):
        table = build_leaderboard(reader(store_uri, [], None, True, keys)).table
        assert list(table["run_id"]) == [running] and table["epoch"].isna().all()


def test_sql_reads_only_the_chosen_epoch(random_store):
    records = read_runs_sql(random_store, [], None, True, ROW_KEYS, "val_auc", "best")
    assert all(not record.history for record in records)
    assert all(bool(record.values) == (record.epoch is not None) for record in records)


@pytest.mark.parametrize(
    ("history", "metric", "selection", "epoch"),
    [
        ({"val_auc": {0: 0.5, 1: 0.9, 2: 0.9}}, "val_auc", "best", 1),  # tie: earliest
        ({"val_loss": {0: 0.5, 1: 0.2, 2: 0.2}}, "val_loss", "best", 1),  # ascending
        ({"val_auc": {0: math.nan, 1: 0.3, 2: math.nan}}, "val_auc", "best", 1),  # NaN skipped
        ({"val_auc": {0: math.nan}, "train_loss": {0: 1.0, 1: 0.9}}, "val_auc", "best", 1),
        ({"best_epoch": {0: 2.0}, "val_auc": {0: 0.9, 2: 0.1}}, "val_auc", "best", 2),
        ({"best_epoch": {0: 0.0}, "train_loss": {0: 1, 3: 1}}, "val_auc", "last", 3),
        ({"test_auc": {4: 0.8}, "val_auc": {0: 0.9}}, "test_auc", "best", 4),
        ({}, "val_auc", "best", None),
    ],
)
def test_epoch_rule(history, metric, selection, epoch):
    assert pick_epoch(facts_from_history(history, metric), metric, selection) == epoch


def test_a_nan_best_epoch_is_no_model_epoch():
    assert facts_from_history({"best_epoch": {0: math.nan}}, "val_auc") == EpochFacts(
        None, None, None, None
    )


@pytest.fixture
def read_only_connections(monkeypatch):
    """Every new connection of this process is read-only (SQLite ``query_only``, PostgreSQL
    ``default_transaction_read_only``), like a read-only role or a hot standby: the reader's
    own sqlite3 connections and every SQLAlchemy one."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from deepfake_detect.leaderboard import sql_connection

    monkeypatch.setattr(sql_connection, "SQLITE_SETUP", ["PRAGMA query_only = ON"])

    def read_only(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("SET SESSION default_transaction_read_only = on")
            dbapi_connection.commit()
        cursor.close()

    event.listen(Engine, "connect", read_only)
    yield
    event.remove(Engine, "connect", read_only)


@pytest.mark.parametrize("read_only", [False, True])
def test_two_connections_and_small_chunks_give_the_same_table(
    random_store, request, monkeypatch, read_only
):
    """Many runs are read on two connections at once (here: more than 2 x CHUNK = 8), and
    bound in chunks of CHUNK runs where no temporary table can be made."""
    from deepfake_detect.leaderboard import sql_reader

    monkeypatch.setattr(sql_reader, "CHUNK", 4)
    if read_only:
        request.getfixturevalue("read_only_connections")
    whole = read_runs_api(random_store, [], None, True, [*ROW_KEYS, BEST_EPOCH_METRIC])
    in_sql = read_runs_sql(random_store, [], None, True, ROW_KEYS, "val_auc", "best")
    pd.testing.assert_frame_equal(build_leaderboard(in_sql).table, build_leaderboard(whole).table)


def test_a_read_only_connection_gives_the_same_table(
    random_store, read_only_connections, monkeypatch
):
    """No temporary table can be made: the runs are bound into the queries instead."""
    from deepfake_detect.leaderboard import sql_reader
    from deepfake_detect.leaderboard.sql_connection import Database, DatabaseError

    database = Database(random_store)  # the reader's own kind of connection (sqlite3 or not)
    with database.connect() as db, pytest.raises(DatabaseError):
        db.run("CREATE TEMPORARY TABLE probe (a INTEGER)")
    database.close()
    made: list[bool] = []
    create = sql_reader._create_chosen_table

    def recording(db, records):
        made.append(create(db, records))
        return made[-1]

    monkeypatch.setattr(sql_reader, "_create_chosen_table", recording)
    whole = read_runs_api(random_store, [], None, True, [*ROW_KEYS, BEST_EPOCH_METRIC])
    in_sql = read_runs_sql(random_store, [], None, True, ROW_KEYS, "val_loss", "best")
    assert made and not any(made)  # every query took the bound-runs path
    pd.testing.assert_frame_equal(
        build_leaderboard(in_sql, "val_loss").table, build_leaderboard(whole, "val_loss").table
    )
