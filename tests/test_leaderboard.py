"""Leaderboard exporter: golden CSVs, re-export, filters, warnings and errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric

from deepfake_detect.commands.cli import main
from deepfake_detect.config.output_files import OutputError, write_atomically
from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import RUN_TYPE_TAG, TRAINING
from tests.conftest import detect, run_cli
from tests.leaderboard_fixtures import Split, log_run, populate, sweep_parent

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def golden_store(store_uri):
    return store_uri, populate(store_uri)


def expected(name: str, ids: dict[str, str]) -> str:
    text = (GOLDEN / f"model_eval_{name}.csv").read_text()
    for key, run_id in ids.items():
        text = text.replace("{" + key + "}", run_id)
    return text


def export(uri: str, out: Path, *extra: str) -> int:
    return main(["leaderboard", "--tracking-uri", uri, "--out", str(out), *extra])


@pytest.mark.parametrize("select", ["best", "last"])
def test_golden_csv(golden_store, tmp_path, select):
    uri, ids = golden_store
    out = tmp_path / "model_eval.csv"
    assert export(uri, out, "--select", select) == 0
    assert out.read_text() == expected(select, ids)
    assert out.with_suffix(".md").read_text().startswith("| model | train_loss |")
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_reexport_is_byte_identical_and_replaces(golden_store, tmp_path):
    uri, _ = golden_store
    out = tmp_path / "model_eval.csv"
    export(uri, out)
    first = out.read_bytes()
    export(uri, out)
    assert out.read_bytes() == first
    assert first.count(b"\n") == 4  # header + 3 finished runs, never appended


def test_failed_runs_only_on_request(golden_store, tmp_path):
    uri, ids = golden_store
    out = tmp_path / "model_eval.csv"
    export(uri, out)
    assert ids["failed"] not in out.read_text()
    export(uri, out, "--include-failed")
    assert out.read_text() == expected("failed", ids)


def test_chart_of_a_run_without_metrics(golden_store, tmp_path):
    """--include-failed --metric val_tp: a run that died before its first epoch has no value."""
    uri, _ = golden_store
    client = store_client(uri)
    eid = client.get_experiment_by_name("golden").experiment_id
    dead = client.create_run(eid, run_name="died_at_start", tags={RUN_TYPE_TAG: TRAINING})
    client.set_terminated(dead.info.run_id, "FAILED")
    out = tmp_path / "model_eval.csv"
    assert export(uri, out, "--include-failed", "--metric", "val_tp") == 0
    assert "died_at_start" in out.read_text()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_swapped_counts_are_flagged(golden_store, tmp_path, capsys):
    uri, ids = golden_store
    export(uri, tmp_path / "model_eval.csv")
    err = capsys.readouterr().err
    flagged = [line for line in err.splitlines() if line.startswith("warning:")]
    assert flagged and all(ids["swapped"] in line for line in flagged)
    assert "efficientnetv2-b0_retrain" in flagged[0]


def test_sweep_filter_and_duplicate_names(store_uri, tmp_path):
    client = store_client(store_uri)
    eid = client.create_experiment("sweeps")
    parent = sweep_parent(client, eid)
    epoch = [(Split(0.5, 0.8, 40, 10, 40, 10), Split(0.5, 0.8, 40, 10, 40, 10))]
    children = [
        log_run(
            client,
            eid,
            "cnn_baseline",
            epoch,
            None,
            {"model.dropout": d, "optimizer.lr": "0.001"},
            parent=parent,
        )
        for d in ("0.1", "0.5")
    ]
    log_run(client, eid, "outsider", epoch, None, {"model.dropout": "0.2"})
    out = tmp_path / "sweep.csv"
    assert export(store_uri, out, "--sweep", parent) == 0
    text = out.read_text()
    assert "outsider" not in text and "sweep-grid" not in text
    for child in children:
        assert f"cnn_baseline-{child[:7]}" in text and child in text
    assert text.count(parent) == 2


def test_unknown_experiment_lists_existing(golden_store, tmp_path, capsys):
    uri, _ = golden_store
    assert export(uri, tmp_path / "x.csv", "--experiment", "nope") == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err and "golden" in err


def test_unknown_sweep_lists_sweeps(golden_store, tmp_path, capsys):
    uri, _ = golden_store
    assert export(uri, tmp_path / "x.csv", "--sweep", "abc") == 2
    assert "unknown sweep 'abc'" in capsys.readouterr().err


def test_missing_store_is_an_error_not_a_new_store(tmp_path, capsys):
    db = tmp_path / "none" / "mlflow.db"
    assert export(f"sqlite:///{db}", tmp_path / "x.csv") == 2
    assert f"no tracking store at {db}" in capsys.readouterr().err
    assert not db.exists()


def test_empty_selection_writes_header_only(store_uri, tmp_path, capsys):
    store_client(store_uri).create_experiment("empty")
    out = tmp_path / "x.csv"
    assert export(store_uri, out, "--experiment", "empty") == 0
    assert out.read_text().splitlines()[0].startswith("model,train_loss,train_acc")
    assert len(out.read_text().splitlines()) == 1
    assert "header-only" in capsys.readouterr().out


def test_unwritable_output_is_a_clear_error(golden_store, tmp_path, capsys):
    uri, _ = golden_store
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    assert export(uri, blocker / "model_eval.csv") == 2
    assert "cannot write" in capsys.readouterr().err


def test_failed_write_keeps_previous_file(tmp_path):
    out = tmp_path / "model_eval.csv"
    out.write_text("previous\n")

    def crash(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OutputError, match="previous file is unchanged"):
        write_atomically(out, crash)
    assert out.read_text() == "previous\n"
    assert list(tmp_path.iterdir()) == [out]


def test_bad_metric_is_rejected(golden_store, tmp_path, capsys):
    uri, _ = golden_store
    assert export(uri, tmp_path / "x.csv", "--metric", "val_f1") == 2
    assert "val_auc" in capsys.readouterr().err


def test_leaderboard_never_imports_tensorflow(golden_store, tmp_path):
    uri, _ = golden_store
    code = (
        "import sys; from deepfake_detect.commands.cli import main; "
        f"rc = main(['leaderboard', '--tracking-uri', {uri!r}, '--out', "
        f"{str(tmp_path / 'x.csv')!r}]); "
        "assert rc == 0; assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "assert 'keras' not in sys.modules"
    )
    result = run_cli(["-c", code])
    assert result.returncode == 0, result.stderr


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\nfrom deepfake_detect.commands.cli import build_parser\nbuild_parser()\n"
        "assert 'tensorflow' not in sys.modules"
    )
    result = run_cli(["-c", code])
    assert result.returncode == 0, result.stderr
    for command in (
        "leaderboard",
        "promote",
        "predict",
        "evaluate",
        "matrix",
        "reproduce",
        "import-csv",
    ):
        code = (
            "import sys\nfrom deepfake_detect.commands.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit as exit:\n"
            "    assert exit.code == 0\nassert 'tensorflow' not in sys.modules, 'tensorflow'"
        )
        helped = run_cli(["-c", code])
        assert helped.returncode == 0, helped.stderr
        assert "usage: deepfake-detect" in helped.stdout


@pytest.mark.parametrize("sweep", [False, True])
def test_api_reader_matches_sql_reader(store_uri, sweep):
    import pandas as pd

    from deepfake_detect.leaderboard.api_reader import read_runs_api
    from deepfake_detect.leaderboard.sql_reader import read_runs_sql
    from deepfake_detect.leaderboard.table import build_leaderboard
    from deepfake_detect.tracking.vocabulary import BEST_EPOCH_METRIC, EPOCH_KEYS, TEST_KEYS

    populate(store_uri)
    client = store_client(store_uri)
    parent = sweep_parent(client, client.get_experiment_by_name("golden").experiment_id)
    epoch = [(Split(0.5, 0.8, 40, 10, 40, 10), Split(0.5, 0.8, 40, 10, 40, 10))]
    log_run(
        client,
        client.get_experiment_by_name("golden").experiment_id,
        "child",
        epoch,
        None,
        {"model.dropout": "0.1"},
        parent=parent,
    )
    args = ([], parent if sweep else None, True)
    sql = build_leaderboard(read_runs_sql(store_uri, *args, EPOCH_KEYS + TEST_KEYS)).table
    keys = [*EPOCH_KEYS, *TEST_KEYS, BEST_EPOCH_METRIC]  # the server reader applies the rule
    api = build_leaderboard(read_runs_api(store_uri, *args, keys)).table
    assert len(sql) == (1 if sweep else 5)
    pd.testing.assert_frame_equal(sql, api)


def test_best_row_is_the_runs_model_epoch_even_when_ranked_by_another_metric(
    store_uri, tmp_path, capsys
):
    """A run that chose its model by val_loss: its row reports that epoch, with a warning."""
    client = store_client(store_uri)
    experiment = client.create_experiment("monitors")
    run_id = log_run(
        client,
        experiment,
        "by-loss",
        [
            (Split(0.6, 0.7, 30, 20, 30, 20), Split(0.50, 0.95, 40, 10, 40, 10)),
            (Split(0.4, 0.8, 40, 10, 40, 10), Split(0.10, 0.80, 45, 5, 45, 5)),
        ],
        Split(0.2, 0.85, 40, 10, 40, 10),
        {"trainer.monitor": "val_loss"},
    )
    client.log_batch(run_id, metrics=[Metric("best_epoch", 1, 9000, 0)])  # the val_loss pick
    out = tmp_path / "board.csv"
    assert export(store_uri, out) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["epoch"] == 1 and row["val_auc"] == 0.8
    assert "chose their model by val_loss" in capsys.readouterr().err


@pytest.mark.parametrize("uri", ["./mlruns", "foo://nowhere"])
def test_unusable_store_uri_is_one_line(tmp_path, uri):
    result = detect(["leaderboard", "--tracking-uri", uri, "--out", "x.csv"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1


def test_store_problems_are_one_line_and_exit_2(golden_store, tmp_path):
    """A corrupt file, a store of another MLflow schema, a server that does not answer."""
    import shutil
    import sqlite3

    from deepfake_detect.tracking.store import sqlite_path
    from tests.conftest import free_port

    uri, _ = golden_store
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database " * 200)
    older = tmp_path / "older.db"
    shutil.copy(sqlite_path(uri), older)
    with sqlite3.connect(older) as db:
        db.execute("UPDATE alembic_version SET version_num = '0a8213491aaa'")
    dead = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    cases = [
        (f"sqlite:///{corrupt}", "is not a readable MLflow store (file is not a database)"),
        (f"sqlite:///{older}", "has MLflow schema revision 0a8213491aaa; this leaderboard reads"),
        (dead, "did not answer within 1 s"),
    ]
    for store, says in cases:
        result = detect(
            ["leaderboard", "--tracking-uri", store, "--out", "x.csv", "--connect-timeout", "1"],
            tmp_path,
        )
        assert result.returncode == 2, (store, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], lines
        assert "s3cret" not in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_same_experiment_name_in_two_workspaces_does_not_collapse(golden_store, tmp_path):
    """MLflow 3.17 names experiments per workspace: the reader reads MLFLOW_WORKSPACE's
    (default: ``default``), never both."""
    import sqlite3

    from deepfake_detect.tracking.store import sqlite_path

    uri, ids = golden_store
    client = store_client(uri)
    other = client.create_experiment("golden-elsewhere")
    split = Split(0.5, 0.8, 40, 10, 40, 10)
    mine = log_run(client, other, "only_in_default", [(split, split)], split, {})
    with sqlite3.connect(sqlite_path(uri)) as db:
        db.execute("UPDATE experiments SET workspace = 'team-b' WHERE name = 'golden'")
        db.execute("UPDATE experiments SET name = 'golden' WHERE name = 'golden-elsewhere'")
    cases = [({}, {mine}), ({"MLFLOW_WORKSPACE": "team-b"}, {ids["baseline"], ids["model_1"]})]
    for env, expected_ids in cases:
        out = tmp_path / f"board-{len(env)}.csv"
        result = detect(
            ["leaderboard", "--tracking-uri", uri, "--experiment", "golden", "--out", str(out)],
            tmp_path,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        found = set(pd.read_csv(out)["run_id"])
        assert expected_ids <= found and (mine in found) == (not env), out.read_text()


def test_the_export_loads_only_what_it_needs(golden_store, tmp_path):
    """A --no-chart export reads SQL and writes text: importing MLflow (2 s with its schema
    module), pandas (0.4 s) or OmegaConf would be most of a 16k-run export's time, and
    SQLAlchemy (0.15 s) is not needed for a SQLite file."""
    uri, _ = golden_store
    code = (
        "import sys; from deepfake_detect.commands.cli import main; "
        f"rc = main(['leaderboard', '--tracking-uri', {uri!r}, '--out', "
        f"{str(tmp_path / 'x.csv')!r}, '--no-chart']); assert rc == 0; "
        "loaded = [m for m in ('mlflow', 'pandas', 'omegaconf', 'tensorflow', 'sqlalchemy') "
        "if m in sys.modules]; assert not loaded, loaded"
    )
    result = run_cli(["-c", code])
    assert result.returncode == 0, result.stderr


def test_the_csv_is_what_pandas_writes():
    """The export writes its columns itself; the bytes must stay DataFrame.to_csv's of the
    same table: quoting, NaN and missing counts blank, floats' shortest repr, flags."""
    from deepfake_detect.leaderboard.export import csv_text, markdown_table
    from deepfake_detect.leaderboard.records import RunRecord
    from deepfake_detect.leaderboard.table import build_leaderboard

    odd = [1e16, 1e-05, 0.1, -0.0, float("nan"), 123456789.125, 2.5, 3.0, float("inf")]
    records = []
    for index, value in enumerate(odd):
        values = {"val_auc": 0.5 + index / 100, "val_loss": value, "val_tp": value * 7}
        if index % 3:
            values["test_auc"] = 1 / (index + 1)
        records.append(
            RunRecord(
                f"{index:032x}",
                ["plain", 'quo"te', "com,ma", "new\nline"][index % 4],
                "FINISHED",
                "exp, with comma",
                "" if index % 2 else f"{index:032x}",
                {"model.dropout": str(index / 10), "optimizer.lr": "1e-3", "x": f"v{index % 2}"},
                pruned=index == 4,
                preselected=True,
                epoch=None if index == 5 else index,
                values=values,
            )
        )
    board = build_leaderboard(records)
    assert board.rows == len(odd) and "x" in board.columns
    assert csv_text(board) == board.table.to_csv(index=False)
    markdown = markdown_table(board)
    assert "| 0.0000 |" in markdown and "| inf |" in markdown  # -0.0 and inf at 4 decimals


def test_the_supported_schema_is_mlflows_head(tmp_path, monkeypatch):
    """The schema revision is read from MLflow's migration sources without importing
    MLflow; it must be the revision MLflow itself creates, merges and annotations included."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    from deepfake_detect.leaderboard import sql_reader

    assert sql_reader.supported_schema() == _get_latest_schema_revision()
    scripts = {
        "a.py": 'revision = "aaa"\ndown_revision = None\n',
        "b.py": 'revision: str = "bbb"\ndown_revision: str | None = "aaa"\n',
        "c.py": "revision = 'ccc'\ndown_revision = 'aaa'\n",
        "d.py": 'revision = "ddd"\ndown_revision = ("bbb", "ccc")\n',  # a merge: the head
    }
    for name, text in scripts.items():
        (tmp_path / name).write_text(f'"""migration {name}"""\n{text}')
    monkeypatch.setattr(sql_reader, "_migration_scripts", lambda: sorted(tmp_path.glob("*.py")))
    assert sql_reader.supported_schema() == "ddd"
    (tmp_path / "e.py").write_text('revision = "eee"\ndown_revision = "ccc"\n')  # two heads
    assert sql_reader.supported_schema() == _get_latest_schema_revision()  # MLflow decides
    (tmp_path / "e.py").unlink()
    for layout in ('down_revision = (\n    "bbb",\n    "ccc",\n)\n', "down_revision = PARENT\n"):
        (tmp_path / "d.py").write_text(f'revision = "ddd"\n{layout}')  # not one literal line
        assert sql_reader.supported_schema() == _get_latest_schema_revision()


def test_list_parameters_expand_on_both_connection_kinds(golden_store):
    """The reader's SQL binds lists (``IN :keys``): expanded for sqlite3 and SQLAlchemy alike;
    an empty list matches nothing; a parameter whose name extends another's is left alone."""
    from deepfake_detect.leaderboard.sql_connection import Database, DatabaseError

    uri, ids = golden_store
    query = "SELECT COUNT(*) FROM runs WHERE run_uuid IN :runs AND name != :runs_name"
    for address in (uri, uri + "?timeout=5"):  # a query string: SQLAlchemy's connection
        database = Database(address)
        with database.connect() as db:
            both = {"runs": [ids["failed"], ids["swapped"]], "runs_name": ""}
            assert db.rows(query, both) == [(2,)]
            assert db.rows(query, {"runs": [], "runs_name": ""}) == [(0,)]
            with pytest.raises(DatabaseError, match="no such table"):
                db.rows("SELECT * FROM no_table")
            # a list named like another's items, a scalar named like an item
            tricky = {"runs": [ids["failed"]], "runs_0": [ids["swapped"]], "runs_1": "x"}
            sql = "SELECT :runs_1, COUNT(*) FROM runs WHERE run_uuid IN :runs_0"
            assert db.rows(sql, tricky) == [("x", 1)]
            assert db.rows(sql.replace("IN :runs_0", "IN :runs"), tricky) == [("x", 1)]
        database.close()
    with Database(uri).connect() as db:  # sqlite3 leaves a ':name' string literal alone
        assert db.rows("SELECT ':runs' WHERE 1 IN :runs", {"runs": [1]}) == [(":runs",)]


def test_a_store_without_a_schema_revision_is_refused(tmp_path, capsys):
    """An empty alembic_version table (an interrupted migration) is named, not a traceback."""
    import sqlite3

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
    assert export(f"sqlite:///{db}", tmp_path / "x.csv") == 2
    assert "has MLflow schema revision None" in capsys.readouterr().err
