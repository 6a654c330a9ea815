"""Bad data and failures: clear errors before any run, FAILED/KILLED runs, NaN guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from deepfake_detect.data.layout import DataError
from deepfake_detect.data.synthetic import generate_dataset
from deepfake_detect.training.main import run_training


def runs_in(uri: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("deepfake_detect")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


@pytest.fixture
def own_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    generate_dataset(root, 32, {"Train": 8, "Validation": 4, "Test": 4}, seed=3)
    return root


def test_missing_root_names_path_and_fix(tiny_cfg, store_uri, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing}.*deepfake-detect synth"):
        run_training(tiny_cfg(f"data.root={missing}"))
    assert runs_in(store_uri) == []


@pytest.mark.parametrize("remove", ["Validation", "Train/Real"])
def test_missing_split_or_class_folder(tiny_cfg, store_uri, own_data, remove):
    shutil.rmtree(own_data / remove)
    with pytest.raises(DataError, match=f"{own_data / remove} is missing"):
        run_training(tiny_cfg(f"data.root={own_data}"))
    assert runs_in(store_uri) == []


def test_empty_class_folder(tiny_cfg, store_uri, own_data):
    for image in (own_data / "Train" / "Fake").iterdir():
        image.unlink()
    (own_data / "Train" / "Fake" / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(DataError, match="holds no images"):
        run_training(tiny_cfg(f"data.root={own_data}"))
    assert runs_in(store_uri) == []


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def test_corrupt_image_names_the_file(tiny_cfg, store_uri, own_data):
    bad = own_data / "Train" / "Real" / "real_00002.jpg"
    truncate(bad)
    with pytest.raises(DataError, match=f"{bad}.*data.skip_corrupt=true"):
        run_training(tiny_cfg(f"data.root={own_data}"))
    assert runs_in(store_uri) == []


@pytest.mark.training
def test_skip_corrupt_logs_how_many(tiny_cfg, store_uri, own_data):
    truncate(own_data / "Train" / "Real" / "real_00002.jpg")
    (own_data / "Validation" / "Fake" / "fake_00001.jpg").write_bytes(b"not a jpeg")
    run_training(
        tiny_cfg(
            f"data.root={own_data}",
            "data.skip_corrupt=true",
            "tracking.log_model=false",
            "trainer.epochs=1",
        )
    )
    (run,) = runs_in(store_uri)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["skipped_images"] == 2
    assert run.data.tags["skipped_images"] == "2"
    assert (
        run.data.metrics["train_tp"]
        + run.data.metrics["train_fp"]
        + run.data.metrics["train_tn"]
        + run.data.metrics["train_fn"]
        == 15
    )


def test_mixed_formats_sizes_and_junk_files(tiny_cfg, store_uri, own_data):
    real = own_data / "Train" / "Real"
    Image.fromarray(np.full((50, 70), 120, np.uint8), mode="L").save(real / "gray.PNG")
    Image.fromarray(np.zeros((40, 40, 4), np.uint8), mode="RGBA").save(real / "rgba.png")
    shutil.copy(real / "real_00000.jpg", real / "UPPER.JPEG")
    (real / "Thumbs.db").write_bytes(b"\x00" * 10)
    (real / ".DS_Store").write_bytes(b"\x00" * 10)
    (real / "notes.txt").write_text("hello")
    run_training(tiny_cfg(f"data.root={own_data}", "tracking.log_model=false", "trainer.epochs=1"))
    (run,) = runs_in(store_uri)
    metrics = run.data.metrics
    assert (
        metrics["train_tp"] + metrics["train_fp"] + metrics["train_tn"] + metrics["train_fn"]
        == 16 + 3
    )


@pytest.mark.training
def test_exception_in_training_marks_run_failed(tiny_cfg, store_uri):
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="rate"):
        run_training(tiny_cfg("model.dropout=1.5"))
    (run,) = runs_in(store_uri)
    assert run.info.status == "FAILED"
    assert "Invalid value received for argument `rate`" in run.data.tags["error"]


def test_ctrl_c_marks_run_killed(tiny_cfg, store_uri, monkeypatch):
    import deepfake_detect.training.fit as trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "fit_and_log", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_cfg())
    (run,) = runs_in(store_uri)
    assert run.info.status == "KILLED"


@pytest.mark.training
def test_nan_loss_fails_run_with_reason(tiny_cfg, store_uri):
    from deepfake_detect.training.callbacks import NonFiniteLossError

    with pytest.raises(NonFiniteLossError):
        run_training(
            tiny_cfg(
                "optimizer=sgd",
                "optimizer.lr=1e30",
                "trainer.epochs=3",
                "trainer.precision=float32",
            )
        )
    (run,) = runs_in(store_uri)
    assert run.info.status == "FAILED"
    assert "loss became" in run.data.tags["error"]
    assert "optimizer.lr" in run.data.tags["error"]


def test_a_split_left_with_one_class_stops_before_training(tiny_cfg, store_uri, own_data):
    for image in (own_data / "Validation" / "Real").iterdir():
        image.write_bytes(b"corrupt")
    with pytest.raises(DataError, match=r"Validation has 0 Real and 4 Fake usable images"):
        run_training(tiny_cfg(f"data.root={own_data}", "data.skip_corrupt=true"))
    assert runs_in(store_uri) == []


def test_non_finite_validation_loss_trips_the_guard():
    import keras

    from deepfake_detect.training.callbacks import NonFiniteLossError, NonFiniteLossGuard

    guard = NonFiniteLossGuard()
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    guard.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.6})
    guard.raise_if_tripped()
    guard.on_epoch_end(1, {"loss": 0.5, "val_loss": float("nan")})
    assert guard.model.stop_training
    with pytest.raises(NonFiniteLossError, match="validation loss became nan at epoch 1"):
        guard.raise_if_tripped()
