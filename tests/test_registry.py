"""Registry workflow on real tiny trained models, every command in a fresh subprocess with no
``MLFLOW_*`` variables and a working directory outside the project."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from PIL import Image

from deepfake_detect.config.paths import PROJECT_ROOT
from deepfake_detect.data.images import load_image
from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import RUN_TYPE_TAG, TRAINING
from tests.conftest import TINY_SIZE, detect, run_cli, tiny_overrides
from tests.helpers import read_predictions

pytestmark = pytest.mark.training
NAME = "deepfake-detector"


@dataclass(frozen=True)
class Store:
    home: Path
    uri: str
    client: MlflowClient
    runs: dict[str, str]  # experiment -> run id


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_data) -> Store:
    """Two trained, registered runs (v1 in deepfake_detect, v2 in side) in a project home."""
    home = tmp_path_factory.mktemp("registry_home")
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    for lr, experiment in (("0.01", "deepfake_detect"), ("0.0001", "side")):
        result = run_cli(
            [
                "-m",
                "deepfake_detect.train",
                *tiny_overrides(tiny_data, uri, home / "cache"),
                f"optimizer.lr={lr}",
                f"tracking.experiment={experiment}",
                "trainer.precision=float32",  # bf16 ties every score of a barely trained model
                "trainer.epochs=3",
            ],
            cwd=home,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    client = store_client(uri)
    runs = {
        name: client.search_runs([client.get_experiment_by_name(name).experiment_id])[0].info.run_id
        for name in ("deepfake_detect", "side")
    }
    return Store(home, uri, client, runs)


def promote(store: Store, cwd: Path, *extra: str):
    return detect(["promote", "--tracking-uri", store.uri, *extra], cwd)


def champion(store: Store, alias: str = "champion") -> str:
    return store.client.get_model_version_by_alias(NAME, alias).run_id


def ranking(store: Store, cwd: Path) -> list[str]:
    out = cwd / "rank.csv"
    assert (
        detect(["leaderboard", "--tracking-uri", store.uri, "--out", str(out)], cwd).returncode == 0
    )
    return list(pd.read_csv(out)["run_id"])


def test_training_registers_versions_with_best_epoch_tags(store):
    versions = sorted(
        store.client.search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version)
    )
    assert [int(v.version) for v in versions] == [1, 2]
    for version in versions:
        assert version.tags["run_id"] == version.run_id
        assert {
            "model_config",
            "val_auc",
            "val_acc",
            "test_auc",
            "best_epoch",
            "image_size",
        } <= set(version.tags)


def test_promote_moves_only_to_a_better_comparable_run(store, tmp_path):
    best, worse = ranking(store, tmp_path)
    worse_experiment = next(name for name, run in store.runs.items() if run == worse)
    result = promote(store, tmp_path, "--dry-run")
    assert result.returncode == 0 and "[dry run] would move" in result.stdout
    assert store.client.get_registered_model(NAME).aliases == {}

    result = promote(store, tmp_path)
    assert result.returncode == 0, result.stderr
    assert champion(store) == best and "moved" in result.stdout

    assert "no change" in promote(store, tmp_path).stdout

    result = promote(store, tmp_path, "--experiment", worse_experiment)
    assert result.returncode == 0 and "stays" in result.stdout
    assert champion(store) == best  # a worse candidate never takes the alias

    result = promote(store, tmp_path, "--experiment", worse_experiment, "--force")
    assert result.returncode == 0 and champion(store) == worse
    assert champion(store, "previous") == best

    result = promote(store, tmp_path)
    assert champion(store) == best and champion(store, "previous") == worse


def test_promote_ignores_runs_on_other_data_and_finds_models_past_the_first_page(store, tmp_path):
    client = store.client
    if "champion" not in client.get_registered_model(NAME).aliases:
        assert promote(store, tmp_path).returncode == 0
    holder = champion(store)
    experiment = client.get_experiment_by_name("deepfake_detect").experiment_id
    other = client.create_run(
        experiment,
        run_name="other-data",
        tags={RUN_TYPE_TAG: TRAINING, "dataset": "elsewhere", "dataset_fingerprint": "f" * 16},
    ).info.run_id
    client.log_batch(
        other,
        metrics=[Metric(k, 0.9999, 0, 0) for k in ("val_auc", "train_loss")],
        params=[Param("data.image_size", "32")],  # same size: only the data differs
    )
    client.set_terminated(other, "FINISHED")
    for index in range(101):  # the champion's model is beyond the first search page
        client.create_registered_model(f"a-{index:03d}")
    versions_before = len(client.search_model_versions(f"name='{NAME}'"))

    result = promote(store, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no change" in result.stdout and champion(store) == holder
    assert len(client.search_model_versions(f"name='{NAME}'")) == versions_before

    result = promote(store, tmp_path, "--dataset", "elsewhere")
    assert result.returncode == 2 and "no FINISHED run on dataset elsewhere" in result.stderr
    assert champion(store) == holder and "Traceback" not in result.stderr
    client.delete_run(other)


@pytest.mark.parametrize(
    ("alias", "says"),
    [
        ("bad alias!", "not valid"),
        ("latest", "reserved"),
        ("v3", "reserved"),
        ("previous", "former holders"),
    ],
)
def test_promote_rejects_bad_aliases_in_one_line(store, tmp_path, alias, says):
    result = promote(store, tmp_path, "--alias", alias)
    assert result.returncode == 2
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_promote_without_finished_runs_changes_nothing(store_uri, tmp_path):
    store_client(store_uri).create_experiment("deepfake_detect")
    result = detect(
        ["promote", "--tracking-uri", store_uri, "--experiment", "deepfake_detect"], tmp_path
    )
    assert result.returncode == 1 and "no FINISHED runs" in result.stderr
    assert store_client(store_uri).search_registered_models() == []


def test_promote_does_not_import_tensorflow(store, tmp_path):
    code = (
        "import sys; from deepfake_detect.commands.cli import main; "
        f"assert main(['promote', '--tracking-uri', {store.uri!r}, '--dry-run']) == 0; "
        "assert 'tensorflow' not in sys.modules"
    )
    result = run_cli(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def evaluate_args(store: Store, tiny_data: Path, *extra: str) -> list[str]:
    """``evaluate`` of version 1 on the tiny data, through the store's URI."""
    return [
        "evaluate",
        f"models:/{NAME}/1",
        "--tracking-uri",
        store.uri,
        "--data",
        str(tiny_data),
        *extra,
    ]


def test_evaluate_logs_a_linked_run_at_both_thresholds(store, tiny_data, tmp_path):
    """Its images stream from the decoded cache that training built (no new entry)."""
    cache = store.home / "cache"
    entries_before = sorted((cache / "decoded").iterdir())
    result = detect(evaluate_args(store, tiny_data, "--cache-dir", str(cache)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted((cache / "decoded").iterdir()) == entries_before
    assert "test_auc" in result.stdout and "at 0.5" in result.stdout
    client = store.client
    experiment = client.get_experiment_by_name("deepfake_detect-evaluation")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert sum(metrics[f"test_{k}"] for k in ("tp", "fp", "tn", "fn")) == 16
    assert sum(metrics[f"test_{k}_at_threshold"] for k in ("tp", "fp", "tn", "fn")) == 16
    assert run.data.tags["registered_model_version"] == "1"
    assert run.data.tags["mlflow.source.name"] == "deepfake-detect evaluate"  # Source column
    (dataset_input,) = run.inputs.dataset_inputs  # the Dataset column
    assert json.loads(dataset_input.dataset.profile)["num_images"] == {"test": 16}
    assert dataset_input.dataset.digest and str(tiny_data) in dataset_input.dataset.source
    # progress as log lines (not a terminal): count, rate, ETA
    assert f"evaluating on {tiny_data / 'Test'}: 16/16 images" in result.stderr
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/roc_test.png", "plots/pr_test.png", "plots/confusion_matrix_test.png"} <= plots
    assert client.get_model_version(NAME, "1").tags["evaluation.last_run_id"] == run.info.run_id
    assert not (tmp_path / "mlflow.db").exists()


TERMINATED_WHILE_PREDICTING = """
import os, signal, sys
from deepfake_detect.inference import evaluate
real = evaluate.predict_scores
def terminated_while_predicting(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stopping the job would
    return real(*args, **kwargs)
evaluate.predict_scores = terminated_while_predicting
from deepfake_detect.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_evaluate_stopped_by_sigterm_leaves_its_run_killed(store, tiny_data, tmp_path):
    extra = ["--output-experiment", "stopped-evaluations", "--cache-dir", "none"]
    result = run_cli(
        ["-c", TERMINATED_WHILE_PREDICTING, *evaluate_args(store, tiny_data, *extra)],
        cwd=tmp_path,
    )
    assert result.returncode == 143, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "error: stopped by signal SIGTERM"
    experiment = store.client.get_experiment_by_name("stopped-evaluations")
    (run,) = store.client.search_runs([experiment.experiment_id])
    assert run.info.status == "KILLED"


def test_predict_folder_matches_model_predict(store, tiny_data, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    jpg = folder / "a.jpg"
    shutil.copy(tiny_data / "Test" / "Fake" / "fake_00000.jpg", jpg)
    png = folder / "nested" / "b.PNG"
    png.parent.mkdir()
    Image.open(tiny_data / "Test" / "Real" / "real_00001.jpg").resize((50, 40)).save(png)
    (folder / "readme.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"garbage")
    out = tmp_path / "pred.csv"
    result = detect(
        [
            "predict",
            f"models:/{NAME}/1",
            str(folder),
            "--out",
            str(out),
            "--tracking-uri",
            store.uri,
            "--threshold",
            "0.5",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines()[0] == "path,prob_fake,label"
    scores = {Path(path).name: prob for path, prob in read_predictions(out.read_text()).items()}
    assert set(scores) == {"a.jpg", "b.PNG"}
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    model = mlflow.keras.load_model(f"models:/{NAME}/1")
    images = np.stack([load_image(p, TINY_SIZE) for p in (jpg, png)]).astype(np.float32)
    expected = model.predict(images, verbose=0).ravel()
    for name, prob in zip(("a.jpg", "b.PNG"), expected, strict=True):
        assert scores[name] == pytest.approx(float(prob), abs=1e-5)


def test_readme_predict_line_uses_the_project_store_from_anywhere(store, tiny_data, tmp_path):
    """The README's ``deepfake-detect predict models:/deepfake-detector@champion FOLDER``, with no
    URI flag and no variables, from another directory: found through the checkout it was
    installed from (here a copy of the package in a fake checkout), and via
    ``DEEPFAKE_DETECT_HOME``."""
    if "champion" not in store.client.get_registered_model(NAME).aliases:
        store.client.set_registered_model_alias(NAME, "champion", "1")
    checkout = tmp_path / "checkout"
    shutil.copytree(
        PROJECT_ROOT / "deepfake_detect",
        checkout / "deepfake_detect",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", checkout / "pyproject.toml")
    (checkout / ".git").mkdir()
    shutil.copytree(store.home / "mlruns", checkout / "mlruns")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tiny_data / "Test" / "Fake"
    readme_line = ["predict", f"models:/{NAME}@champion", str(folder)]
    for env in ({"PYTHONPATH": str(checkout)}, {"DEEPFAKE_DETECT_HOME": str(store.home)}):
        result = detect(readme_line, elsewhere, env=env)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1 + 8
    run_id = store.runs["deepfake_detect"]
    result = detect(
        ["predict", f"runs:/{run_id}/model", str(folder), "--tracking-uri", store.uri], elsewhere
    )
    assert result.returncode == 0, result.stderr
    assert list(elsewhere.iterdir()) == []  # no ./mlflow.db, nothing else


def test_user_errors_are_one_line(store, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("x")
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([f"models:/{NAME}/1", str(text)], f"{text} is not an image"),
        (["models:/nope@champion", str(image)], "registered models: "),
        ([f"models:/{NAME}/99", str(image)], "versions 1, 2"),
        ([f"models:/{NAME}@gold", str(image)], "no alias 'gold'"),
        (["s3://bucket/model", str(image)], "not understood"),
        ([f"models:/{NAME}/1", str(tmp_path / "missing")], "does not exist"),
        ([f"models:/{NAME}/1", str(empty)], "holds no images"),
    ]
    for args, says in cases:
        result = detect(["predict", *args, "--tracking-uri", store.uri], tmp_path)
        assert result.returncode == 2, args
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    missing_store = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    result = detect(
        ["predict", f"models:/{NAME}/1", str(image), "--tracking-uri", missing_store], tmp_path
    )
    assert result.returncode == 2 and "no tracking store" in result.stderr
    assert not (tmp_path / "none").exists()


def test_load_by_alias_and_pyfunc(store, tiny_data):
    store.client.set_registered_model_alias(NAME, "pyfunc-check", "1")
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    images = np.stack(
        [
            load_image(p, TINY_SIZE)
            for p in sorted((tiny_data / "Validation" / "Fake").glob("*.jpg"))[:3]
        ]
    ).astype(np.float32)
    keras_prob = mlflow.keras.load_model(f"models:/{NAME}@pyfunc-check").predict(images, verbose=0)
    pyfunc_prob = mlflow.pyfunc.load_model(f"models:/{NAME}@pyfunc-check").predict(images)
    np.testing.assert_allclose(
        np.asarray(pyfunc_prob).reshape(-1), keras_prob.reshape(-1), atol=1e-6
    )
