"""Bad data and failures: clear errors before any run, FAILED/KILLED runs, NaN guard."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfake_detect.data.layout import DataError
from deepfake_detect.data.synthetic import generate_dataset
from deepfake_detect.tracking.store import store_client
from deepfake_detect.training.main import run_training
from tests.conftest import clean_env, tiny_overrides


def runs_in(uri: str):
    client = store_client(uri)
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
    """Also: a Train image copied into Test is leakage, and a folder that is not a class is
    reported; both are tags of the run."""
    truncate(own_data / "Train" / "Real" / "real_00002.jpg")
    (own_data / "Validation" / "Fake" / "fake_00001.jpg").write_bytes(b"not a jpeg")
    leaked = own_data / "Test" / "Fake" / "x.jpg"
    shutil.copy(own_data / "Train" / "Fake" / "fake_00003.jpg", leaked)
    (own_data / "Train" / "Unknown").mkdir()
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
    assert run.data.tags["leakage_duplicates"] == "1"
    assert run.data.tags["unexpected_folders"] == "Train/Unknown"
    assert (
        run.data.metrics["train_tp"]
        + run.data.metrics["train_fp"]
        + run.data.metrics["train_tn"]
        + run.data.metrics["train_fn"]
        == 15
    )


@pytest.mark.training
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

    missing = "/nonexistent/weights.h5"
    with pytest.raises(InstantiationException, match="weights"):
        run_training(tiny_cfg("model=efficientnetv2_b0", f"model.weights={missing}"))
    (run,) = runs_in(store_uri)
    assert run.info.status == "FAILED"
    assert "neither null, 'imagenet' nor an existing weights file" in run.data.tags["error"]


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


def epoch_logged(db: Path) -> bool:
    """A read-only look (no schema creation racing the trainer's): an epoch is logged."""
    if not db.is_file():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            query = "SELECT COUNT(*) FROM metrics WHERE key = 'train_loss'"
            return connection.execute(query).fetchone()[0] > 0
    except sqlite3.Error:
        return False


@pytest.mark.training
def test_sigterm_marks_the_run_killed(tmp_path, tiny_data):
    """``kill`` / ``timeout`` / a scheduler's time limit: the run ends KILLED, exit 143."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [
        sys.executable,
        "-m",
        "deepfake_detect.train",
        *tiny_overrides(tiny_data, uri, tmp_path / "cache"),
        "trainer.epochs=500",
    ]
    process = subprocess.Popen(
        args, cwd=tmp_path, env=clean_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not epoch_logged(tmp_path / "mlruns" / "mlflow.db"):
            time.sleep(1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr[-2000:]
    (run,) = runs_in(uri)
    assert run.info.status == "KILLED"
    assert "SIGTERM" in run.data.tags["error"]
