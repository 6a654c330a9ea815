"""Registry workflow on real tiny trained models: register, promote, evaluate, predict."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from deepfake_detect.commands.cli import main
from deepfake_detect.data.decode_cache import load_image
from deepfake_detect.training.main import run_training
from tests.conftest import TINY_SIZE, run_cli, tiny_overrides

NAME = "deepfake-detector"


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory, tiny_data):
    """Two trained runs (registered as v1, v2) in one store, shared by this module."""
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    for lr in ("0.01", "0.0001"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "train",
                tiny_overrides(tiny_data, uri, folder / "cache")
                + [f"optimizer.lr={lr}", "trainer.epochs=1"],
            )
        run_training(cfg)
    return uri, MlflowClient(tracking_uri=uri)


def promote(uri: str, *extra: str) -> int:
    return main(["promote", "--tracking-uri", uri, *extra])


def test_training_registers_versions_with_tags(registry_store):
    _, client = registry_store
    versions = sorted(client.search_model_versions(f"name='{NAME}'"), key=lambda v: v.version)
    assert [int(v.version) for v in versions] == [1, 2]
    for version in versions:
        assert version.tags["run_id"] == version.run_id
        assert {
            "model_config",
            "val_auc",
            "val_acc",
            "test_auc",
            "dataset_fingerprint",
            "git_commit",
        } <= set(version.tags)


def best_run_id(client: MlflowClient) -> str:
    runs = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    return max(
        runs,
        key=lambda r: max(m.value for m in client.get_metric_history(r.info.run_id, "val_auc")),
    ).info.run_id


def test_promote_dry_run_then_real_then_previous(registry_store, capsys):
    uri, client = registry_store
    assert promote(uri, "--dry-run") == 0
    assert "[dry run] would move" in capsys.readouterr().out
    assert client.get_registered_model(NAME).aliases == {}

    assert promote(uri) == 0
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.run_id == best_run_id(client)
    assert "-> v" in capsys.readouterr().out

    assert promote(uri) == 0  # same best: nothing moves
    assert "no change" in capsys.readouterr().out

    other = next(
        v for v in client.search_model_versions(f"name='{NAME}'") if v.version != champion.version
    )
    client.set_registered_model_alias(NAME, "champion", other.version)
    assert promote(uri) == 0
    out = capsys.readouterr().out
    assert f"v{other.version}" in out and "val_auc" in out
    assert client.get_model_version_by_alias(NAME, "champion").version == champion.version
    assert client.get_model_version_by_alias(NAME, "previous").version == other.version


def test_promote_registers_an_unregistered_best_run(registry_store, capsys):
    uri, client = registry_store
    assert promote(uri, "--model-name", "fresh-detector", "--alias", "prod") == 0
    version = client.get_model_version_by_alias("fresh-detector", "prod")
    assert version.run_id == best_run_id(client)
    assert version.tags["run_id"] == version.run_id
    assert "registered run" in capsys.readouterr().out


def test_promote_without_finished_runs_changes_nothing(store_uri, capsys):
    MlflowClient(tracking_uri=store_uri).create_experiment("deepfake_detect")
    assert promote(store_uri, "--experiment", "deepfake_detect") == 1
    assert "no FINISHED runs" in capsys.readouterr().err
    assert MlflowClient(tracking_uri=store_uri).search_registered_models() == []


def test_promote_does_not_import_tensorflow(registry_store):
    uri, _ = registry_store
    code = (
        "import sys; from deepfake_detect.commands.cli import main; "
        f"assert main(['promote', '--tracking-uri', {uri!r}, '--dry-run']) == 0; "
        "assert 'tensorflow' not in sys.modules"
    )
    result = run_cli(["-c", code])
    assert result.returncode == 0, result.stderr


def test_evaluate_logs_a_linked_run(registry_store, tiny_data, capsys):
    uri, client = registry_store
    assert (
        main(
            [
                "evaluate",
                f"models:/{NAME}/1",
                "--tracking-uri",
                uri,
                "--data",
                str(tiny_data),
                "--split",
                "Test",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test_auc" in out
    experiment = client.get_experiment_by_name("deepfake_detect-evaluation")
    (run,) = client.search_runs([experiment.experiment_id])
    assert {
        f"test_{k}" for k in ("loss", "acc", "precision", "recall", "auc", "fn", "fp", "tn", "tp")
    } <= set(run.data.metrics)
    assert sum(run.data.metrics[f"test_{k}"] for k in ("tp", "fp", "tn", "fn")) == 16
    assert run.data.tags["registered_model_version"] == "1"
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/roc_test.png", "plots/pr_test.png", "plots/confusion_matrix_test.png"} <= plots
    assert client.get_model_version(NAME, "1").tags["evaluation.last_run_id"] == run.info.run_id


def test_predict_folder_matches_model_predict(registry_store, tiny_data, tmp_path):
    uri, client = registry_store
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
    assert (
        main(
            [
                "predict",
                f"models:/{NAME}/1",
                str(folder),
                "--out",
                str(out),
                "--tracking-uri",
                uri,
                "--threshold",
                "0.5",
            ]
        )
        == 0
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "path,prob_fake,label"
    rows = {Path(line.split(",")[0]).name: line.split(",") for line in lines[1:]}
    assert set(rows) == {"a.jpg", "b.PNG"}
    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model(f"models:/{NAME}/1")
    expected = model.predict(
        np.stack([load_image(p, TINY_SIZE) for p in (jpg, png)]).astype(np.float32), verbose=0
    ).ravel()
    for name, prob in zip(("a.jpg", "b.PNG"), expected, strict=True):
        assert float(rows[name][1]) == pytest.approx(float(prob), abs=1e-5)
        assert rows[name][2] == ("Fake" if prob > 0.5 else "Real")


def test_predict_named_non_image_is_an_error(registry_store, tmp_path, capsys):
    uri, _ = registry_store
    text = tmp_path / "notes.txt"
    text.write_text("x")
    assert main(["predict", f"models:/{NAME}/1", str(text), "--tracking-uri", uri]) == 2
    assert f"{text} is not an image" in capsys.readouterr().err


def test_unknown_model_version_alias_list_what_exists(registry_store, tmp_path, capsys):
    uri, _ = registry_store
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["predict", "models:/nope@champion", str(img), "--tracking-uri", uri]) == 2
    assert f"registered models: {NAME}" in capsys.readouterr().err
    assert main(["predict", f"models:/{NAME}/99", str(img), "--tracking-uri", uri]) == 2
    assert "versions 1, 2" in capsys.readouterr().err
    assert main(["predict", f"models:/{NAME}@gold", str(img), "--tracking-uri", uri]) == 2
    assert "no alias 'gold'" in capsys.readouterr().err


def test_load_by_alias_and_pyfunc(registry_store, tiny_data):
    uri, client = registry_store
    client.set_registered_model_alias(NAME, "champion", "1")
    mlflow.set_tracking_uri(uri)
    images = np.stack(
        [
            load_image(p, TINY_SIZE)
            for p in sorted((tiny_data / "Validation" / "Fake").glob("*.jpg"))[:3]
        ]
    ).astype(np.float32)
    keras_prob = mlflow.keras.load_model(f"models:/{NAME}@champion").predict(images, verbose=0)
    pyfunc_prob = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(images)
    np.testing.assert_allclose(
        np.asarray(pyfunc_prob).reshape(-1), keras_prob.reshape(-1), atol=1e-6
    )
