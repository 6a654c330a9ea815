"""``deepfake-detect import-csv``: the seed's hand-kept model_eval.csv as FINISHED runs, through
the real CLI and a real MLflow store (no TensorFlow, no mocks)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param

from deepfake_detect.commands import import_csv
from deepfake_detect.commands.cli import main
from deepfake_detect.leaderboard.api_reader import read_runs_api
from deepfake_detect.leaderboard.import_table import (
    DEFAULT_EXPERIMENT,
    ImportTableError,
    find_fix,
    import_table,
    read_table,
)
from deepfake_detect.leaderboard.reader import ROW_KEYS
from deepfake_detect.leaderboard.sql_reader import read_runs_sql
from deepfake_detect.leaderboard.table import TOLERANCE, build_leaderboard
from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    DATASET_TAG,
    FINGERPRINT_TAG,
    IMAGE_SIZE_PARAM,
    RUN_TYPE_TAG,
    SEED_EPOCH_KEYS,
    TRAINING,
)
from tests.conftest import detect, mlflow_server, run_cli

COLUMNS = ",".join(SEED_EPOCH_KEYS)
# the seed notebook's table (In [31]) as df.to_csv wrote it: an unnamed integer index column,
# then 'Unnamed: 0' with the names (the frame had itself been read from CSV); row 0 is blank
SEED_CSV = f""",Unnamed: 0,{COLUMNS}
0,models,,,,,,,,,,,,,,,,,,
1,model_1,0.046418,0.983007,0.981008,0.985086,0.998207,1044.0,1335.0,68666.0,68957.0,0.728149,0.859973,0.848666,0.877445,0.918686,2425.0,3096.0,16545.0,17362.0
2,efficientnetv2-b0_retrain,0.003119,0.977746,0.99427,0.963431,0.993228,86257.0,89180.0,3385.0,608.0,0.119601,0.965126,0.991854,0.949819,0.982413,18614.0,19439.0,1027.0,348.0
3,cnn_reid,0.052528,0.978279,0.998641,0.963815,0.993872,67389.0,69572.0,2612.0,429.0,0.367717,0.902252,0.965261,0.853517,0.972052,16340.0,19234.0,3301.0,553.0
4,cnn_baseline,0.202,0.9176,0.91,0.927,0.9747,5112.0,6418.0,63583.0,64889.0,0.4216,0.8216,0.7723,0.9139,0.9169,1704.0,5331.0,14310.0,18083.0
"""
SWAPPED = ("efficientnetv2-b0_retrain", "cnn_reid")
# what the seed's two broken rows need: their counts as tn,tp,fn,fp and precision/auc swapped
# (no permutation of the counts alone agrees: precision stays up to 0.009 off)
SEED_FIX = "precision,auc,fn,fp,tn,tp<-auc,precision,tn,tp,fn,fp"

# one leading column; made_up's val counts fit no permutation, swapped_tp_fn's train tp/fn are
# exchanged (fixed by moving the counts alone)
OTHER_CSV = f"""model,{COLUMNS}
made_up,0.3,0.9,0.9,0.9,0.95,10,10,90,90,0.4,0.9,0.9,0.9,0.9,40,40,10,10
swapped_tp_fn,0.3,0.8,0.75,0.9,0.9,90,30,70,10,0.4,0.9,0.9,0.9,0.95,10,10,90,90
"""


def rates(fn: float, fp: float, tn: float, tp: float) -> tuple[float, float, float]:
    """acc, precision, recall (the test's own arithmetic)."""
    return (tp + tn) / (tp + fp + tn + fn), tp / (tp + fp), tp / (tp + fn)


def seed_values() -> dict[str, dict[str, float]]:
    """model -> metric -> value, as the seed's file holds them."""
    table = pd.read_csv(pd.io.common.StringIO(SEED_CSV), index_col=0).dropna()
    return {row["Unnamed: 0"]: row.drop("Unnamed: 0").to_dict() for _, row in table.iterrows()}


def apply_notation(values: dict[str, float], notation: str) -> dict[str, float]:
    """The documented columns_fixed notation: SPLIT:LOGGED<-FILE, ';' between splits."""
    fixed = dict(values)
    for part in filter(None, notation.split(";")):
        split, moves = part.split(":")
        logged, sources = (side.split(",") for side in moves.split("<-"))
        for target, source in zip(logged, sources, strict=True):
            fixed[f"{split}_{target}"] = values[f"{split}_{source}"]
    return fixed


def imported_runs(uri: str) -> list:
    client = store_client(uri)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """The seed's table imported once through the CLI: (folder, uri, csv path, result)."""
    folder = tmp_path_factory.mktemp("seed_import")
    path = folder / "model_eval.csv"
    path.write_text(SEED_CSV)
    uri = f"sqlite:///{folder}/mlflow.db"
    result = detect(["import-csv", str(path), "--tracking-uri", uri], folder)
    return folder, uri, path, result


def test_the_file_is_in_the_seed_format():
    table = pd.read_csv(pd.io.common.StringIO(SEED_CSV))
    assert list(table.columns[:3]) == ["Unnamed: 0.1", "Unnamed: 0", "train_loss"]  # as printed
    assert list(table["Unnamed: 0"]) == [
        "models",
        "model_1",
        "efficientnetv2-b0_retrain",
        "cnn_reid",
        "cnn_baseline",
    ]


def test_seed_rows_become_finished_imported_runs(seed):
    _, uri, path, result = seed
    assert result.returncode == 0, result.stderr
    runs = imported_runs(uri)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(run.info.run_name for run in runs) == sorted(
        ["model_1", "efficientnetv2-b0_retrain", "cnn_reid", "cnn_baseline"]
    )
    client = store_client(uri)
    for run in runs:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["imported"] == "true" and tags["imported_sha256"] == digest
        assert tags[RUN_TYPE_TAG] == TRAINING and tags["model"] == run.info.run_name
        assert tags["imported_file"] == str(path.resolve())
        assert run.data.metrics["best_epoch"] == 0
        for key in SEED_EPOCH_KEYS:
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0]
    rows = {run.info.run_name: run.data.tags["imported_row"] for run in runs}
    assert rows == {"model_1": "1", "efficientnetv2-b0_retrain": "2", "cnn_reid": "3"} | {
        "cnn_baseline": "4"
    }
    assert "skipped 1 blank row(s): models (row 0)" in result.stdout
    assert "models" not in {run.info.run_name for run in runs}


def test_swapped_rows_are_fixed_and_now_agree(seed):
    _, uri, _, result = seed
    file_values = seed_values()
    for run in imported_runs(uri):
        name, tags, logged = run.info.run_name, run.data.tags, run.data.metrics
        if name in SWAPPED:
            assert tags["columns_fixed"] == f"train:{SEED_FIX};val:{SEED_FIX}"
            assert "inconsistent" not in tags
            for split in ("train", "val"):
                assert (
                    f"{name}): {split} counts disagree with its rates as written" in result.stderr
                )
        else:
            assert "columns_fixed" not in tags and "inconsistent" not in tags
        expected = apply_notation(file_values[name], tags.get("columns_fixed", ""))
        assert {key: logged[key] for key in SEED_EPOCH_KEYS} == pytest.approx(expected, abs=0)
        for split in ("train", "val"):
            counts = [logged[f"{split}_{name}"] for name in ("fn", "fp", "tn", "tp")]
            wanted = [logged[f"{split}_{name}"] for name in ("acc", "precision", "recall")]
            assert rates(*counts) == pytest.approx(wanted, abs=1e-3)
    assert "1 other permutation also agrees, but moves more columns" in result.stderr


def test_reimport_is_a_no_op(seed):
    folder, uri, path, _ = seed
    before = sorted(run.info.run_id for run in imported_runs(uri))
    again = detect(["import-csv", str(path), "--tracking-uri", uri], folder)
    assert again.returncode == 0, again.stderr
    assert sorted(run.info.run_id for run in imported_runs(uri)) == before
    assert again.stdout.startswith("nothing new imported")
    for name in ("model_1", "efficientnetv2-b0_retrain", "cnn_reid", "cnn_baseline"):
        assert name in again.stdout


def exported(table: Path) -> dict[str, dict]:
    return {row["model"]: row for row in pd.read_csv(table).to_dict("records")}


def check_leaderboard(rows: dict[str, dict], uri: str) -> None:
    runs = {run.info.run_name: run for run in imported_runs(uri)}
    assert set(rows) == set(runs)
    for name, run in runs.items():
        assert rows[name]["run_id"] == run.info.run_id and rows[name]["epoch"] == 0
        for key in SEED_EPOCH_KEYS:
            assert rows[name][key] == pytest.approx(run.data.metrics[key], rel=1e-12), key


def test_leaderboard_lists_them(seed):
    folder, uri, _, _ = seed
    sql = detect(
        ["leaderboard", "--tracking-uri", uri, "--out", str(folder / "sql.csv"), "--no-chart"],
        folder,
    )
    assert sql.returncode == 0, sql.stderr
    assert "warning:" not in sql.stderr  # the fixed rows agree now
    check_leaderboard(exported(folder / "sql.csv"), uri)


def test_both_readers_report_the_same_rows(seed):
    _, uri, _, _ = seed
    keys = [*ROW_KEYS, BEST_EPOCH_METRIC]  # as reader.read_store asks the API reader
    sql = build_leaderboard(read_runs_sql(uri, [], None, False, ROW_KEYS)).table
    api = build_leaderboard(read_runs_api(uri, [], None, False, keys)).table
    assert len(sql) == 4 and list(sql["epoch"]) == [0, 0, 0, 0]
    pd.testing.assert_frame_equal(sql, api)


@pytest.mark.slow
def test_leaderboard_through_a_server_matches(seed):
    folder, uri, _, _ = seed
    if not (folder / "sql.csv").exists():
        test_leaderboard_lists_them(seed)
    with mlflow_server(folder) as url:  # the API reader with the server's bulk histories
        api = detect(
            ["leaderboard", "--tracking-uri", url, "--out", str(folder / "api.csv"), "--no-chart"],
            folder,
        )
    assert api.returncode == 0, api.stderr
    assert (folder / "api.csv").read_text() == (folder / "sql.csv").read_text()


def test_promote_with_only_imported_runs_changes_nothing(seed):
    folder, uri, _, _ = seed
    result = detect(["promote", "--tracking-uri", uri], folder)
    assert result.returncode == 2
    assert "4 imported run(s)" in result.stderr and "promote never picks them" in result.stderr
    assert store_client(uri).search_registered_models() == []


def test_promote_skips_imported_runs_beside_a_trained_one(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = tmp_path / "model_eval.csv"
    path.write_text(SEED_CSV)
    import_table(read_table(path), uri)
    client = store_client(uri)
    experiment_id = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    # an imported row with a model attached after the fact is still never a candidate
    top = max(imported_runs(uri), key=lambda run: run.data.metrics["val_auc"])
    client.create_logged_model(experiment_id, name="model", source_run_id=top.info.run_id)
    tags = {RUN_TYPE_TAG: TRAINING, DATASET_TAG: "faces", FINGERPRINT_TAG: "abc123"}
    trained = client.create_run(experiment_id, run_name="trained", tags=tags).info.run_id
    metrics = [Metric(key, 0.5, 1, 0) for key in ("train_loss", "val_auc", "best_epoch")]
    client.log_batch(trained, metrics=metrics, params=[Param(IMAGE_SIZE_PARAM, "32")])
    client.set_terminated(trained, "FINISHED")
    client.create_logged_model(experiment_id, name="model", source_run_id=trained)
    result = detect(["promote", "--tracking-uri", uri, "--dry-run"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"-> run trained ({trained[:8]})" in result.stdout


def test_unfixable_rows_are_tagged_and_warned(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = tmp_path / "other.csv"
    path.write_text(OTHER_CSV)
    code = (  # the command never loads TensorFlow
        "import sys; from deepfake_detect.commands.cli import main; "
        f"assert main(['import-csv', {str(path)!r}, '--tracking-uri', {uri!r}]) == 0; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tensorflow'"
    )
    result = run_cli(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = {run.info.run_name: run for run in imported_runs(uri)}
    made_up = runs["made_up"].data.tags
    assert made_up["inconsistent"] == "true" and made_up["inconsistent_splits"] == "val"
    assert "columns_fixed" not in made_up
    warning = next(line for line in result.stderr.splitlines() if "made_up" in line)
    assert warning.startswith("warning:") and "line 2 (made_up): val counts" in warning
    assert "tagged inconsistent=true" in warning
    assert runs["made_up"].data.metrics["val_fn"] == 40  # imported as written
    swapped = runs["swapped_tp_fn"].data
    assert swapped.tags["columns_fixed"] == "train:fn,tp<-tp,fn"
    assert (swapped.metrics["train_fn"], swapped.metrics["train_tp"]) == (10, 90)
    assert "inconsistent" not in swapped.tags


def test_help_documents_the_notation():
    code = (
        "import sys\nfrom deepfake_detect.commands.cli import main\n"
        "try:\n    main(['import-csv', '--help'])\nexcept SystemExit as exit:\n"
        "    assert exit.code == 0\nassert 'tensorflow' not in sys.modules, 'tensorflow'"
    )
    result = run_cli(["-c", code])
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split()).replace("- ", "-")
    assert "train:fn,fp,tn,tp<-tp,tn,fp,fn means the logged train_fn is the file's" in text
    assert f"(default {DEFAULT_EXPERIMENT})" in text and f"(tolerance {TOLERANCE:g})" in text
    assert import_csv.DEFAULT_EXPERIMENT == DEFAULT_EXPERIMENT  # the adapter's copy


def bad_import(path: Path, uri: str, capsys) -> str:
    assert main(["import-csv", str(path), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert err.endswith("nothing was imported")
    return err


@pytest.mark.parametrize(
    "edit, says",
    [
        (None, "no such file"),
        (lambda text: text.replace(",val_auc,", ",val_aux,"), "('val_aux') is not a metric"),
        (
            lambda text: text.replace(",val_tp\n", "\n").replace(",17362.0\n", "\n"),
            "has no column val_tp",
        ),
        (  # in the last row: nothing before it is imported either
            lambda text: text.replace(",0.9169,", ",0.91x,"),
            "line 6 (cnn_baseline), column val_auc: '0.91x' is not a number",
        ),
        (lambda text: text.replace(",5112.0,", ",5112.5,"), "column train_fn: '5112.5' is not a"),
        (lambda text: text.replace("3,cnn_reid,", "3,cnn_reid,1,"), "line 5 has 21 fields"),
    ],
)
def test_bad_input_is_one_line_and_imports_nothing(tmp_path, capsys, edit, says):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    path = tmp_path / "model_eval.csv"
    if edit is not None:
        path.write_text(edit(SEED_CSV))
    err = bad_import(path, uri, capsys)
    assert says in err and str(path) in err
    assert not (tmp_path / "store").exists()  # checked before any store or run exists


def test_a_row_appended_without_its_index_is_read(tmp_path):
    # df.to_csv(mode="a", header=False) of a frame indexed by name appends one field fewer
    path = tmp_path / "model_eval.csv"
    path.write_text(SEED_CSV.replace("4,cnn_baseline,", "cnn_baseline,"))
    table = read_table(path)
    assert [row.name for row in table.rows][-1] == "cnn_baseline"
    assert table.rows[-1].values["train_loss"] == 0.202 and table.rows[-1].values["val_tp"] == 18083


def test_only_blank_rows_is_an_error(tmp_path):
    path = tmp_path / "model_eval.csv"
    path.write_text(SEED_CSV.splitlines()[0] + "\n0,models" + "," * 18 + "\n")
    with pytest.raises(ImportTableError, match="no row with values"):
        read_table(path)


def test_ties_between_permutations_are_said():
    # the true counts are tp=tn=40, fp=fn=10; the file has the 40s in fn/fp, the 10s in tn/tp:
    # four permutations agree, each moving all four columns
    values = {"acc": 0.8, "precision": 0.8, "recall": 0.8, "auc": 0.9}
    values |= {"fn": 40.0, "fp": 40.0, "tn": 10.0, "tp": 10.0}
    fix = find_fix("val", values)
    assert fix is not None and fix.tied and fix.alternatives == 3 and not fix.rates_moved
    assert "3 other permutations agree, but ties with it" in fix.describe()
    assert fix.notation() == "val:fn,fp,tn,tp<-tn,tp,fn,fp"  # the first in column order


def test_the_import_check_flags_what_the_leaderboard_flags():
    """rates.disagreeing (the import) and table.consistency_warnings (the leaderboard) agree,
    near the tolerance and with zero denominators too."""
    import random

    from deepfake_detect.leaderboard.rates import disagreeing
    from deepfake_detect.leaderboard.table import consistency_warnings

    rng = random.Random(3)
    rows = []
    for index in range(400):
        tp, fp, tn, fn = (float(rng.choice([0, 0, 1, 3, 7, 50])) for _ in range(4))
        n = tp + fp + tn + fn
        true = [(tp + tn) / n if n else 0.5, tp / (tp + fp) if tp + fp else 0.5]
        true.append(tp / (tp + fn) if tp + fn else 0.5)
        acc, precision, recall = (v + rng.choice([0, 0, 9e-4, -1.1e-3, 0.2]) for v in true)
        rows.append(
            {"model": f"m{index}", "run_id": str(index)}
            | {"train_tp": tp, "train_fp": fp, "train_tn": tn, "train_fn": fn}
            | {"train_acc": acc, "train_precision": precision, "train_recall": recall}
        )
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    flagged = {line.split()[1] for line in consistency_warnings(columns)}
    mine = {
        row["model"]
        for row in rows
        if disagreeing({k.removeprefix("train_"): v for k, v in row.items()}, TOLERANCE)
    }
    assert flagged == mine and 0 < len(mine) < len(rows)
