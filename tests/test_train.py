"""A real 3-epoch fit (subprocess, like a user's shell) whose best epoch is not the last.

The last epoch is sabotaged (``tests.helpers.ZeroWeightsAtLastEpoch``: val AUC exactly 0.5),
so every "the model is the best epoch" check below fails if the last weights leak through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.metrics.binary import roc_auc
from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import EPOCH_KEYS, TEST_KEYS
from deepfake_detect.training.main import run_training
from tests.conftest import detect, run_cli, tiny_overrides
from tests.helpers import read_predictions, write_separable_data

pytestmark = pytest.mark.training
EPOCHS = 3


@dataclass(frozen=True)
class Trained:
    uri: str
    data: Path
    client: MlflowClient
    run: mlflow.entities.Run
    stdout: str
    home: Path

    def history(self, key: str) -> dict[int, float]:
        return {m.step: m.value for m in self.client.get_metric_history(self.run.info.run_id, key)}


def train_cli(data: Path, home: Path, *extra: str):
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    args = [
        "-m",
        "deepfake_detect.train",
        *tiny_overrides(data, uri, home / "cache"),
        f"trainer.epochs={EPOCHS}",
        *extra,
    ]
    return uri, run_cli(args, cwd=home)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    home = tmp_path_factory.mktemp("trained")
    data = write_separable_data(home / "data")
    uri, result = train_cli(
        data,
        home,
        "model.dropout=0.2",
        "optimizer.lr=0.01",
        "+trainer.callbacks.sabotage._target_=tests.helpers.ZeroWeightsAtLastEpoch",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = store_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    return Trained(uri, data, client, run, result.stdout, home)


def test_every_epoch_logs_the_18_keys_and_lr_once(trained):
    assert trained.run.info.status == "FINISHED"
    for key in [*EPOCH_KEYS, "lr"]:
        steps = [m.step for m in trained.client.get_metric_history(trained.run.info.run_id, key)]
        assert sorted(steps) == list(range(EPOCHS)), key


def test_best_epoch_is_the_earliest_maximum_and_not_the_sabotaged_last(trained):
    aucs = trained.history("val_auc")
    assert aucs[EPOCHS - 1] == 0.5  # every score tied: exact AUC, not Keras' approximation
    best = int(trained.run.data.metrics["best_epoch"])
    assert best < EPOCHS - 1
    assert best == min(step for step, value in aucs.items() if value == max(aucs.values()))


def test_counts_and_accuracy_are_consistent(trained):
    for split, size in (("train", 32), ("val", 16)):
        for step in range(EPOCHS):
            values = {
                name: trained.history(f"{split}_{name}")[step]
                for name in ("tp", "fp", "tn", "fn", "acc")
            }
            n = values["tp"] + values["fp"] + values["tn"] + values["fn"]
            assert n == size
            assert values["acc"] == pytest.approx((values["tp"] + values["tn"]) / n, abs=1e-6)


def test_test_metrics_threshold_and_model_come_from_the_best_epoch(trained):
    best = int(trained.run.data.metrics["best_epoch"])
    for key in [*TEST_KEYS, "val_youden_threshold"]:
        assert list(trained.history(key)) == [best], key
    metrics = trained.run.data.metrics
    assert sum(metrics[f"test_{k}"] for k in ("tp", "fp", "tn", "fn")) == 16
    assert metrics["test_auc"] > 0.9  # the sabotaged last weights would score 0.5
    mlflow.set_tracking_uri(trained.uri)
    mlflow.set_registry_uri(trained.uri)
    info = mlflow.models.get_model_info("models:/deepfake-detector/1")
    assert info.metadata["best_epoch"] == best
    assert info.metadata["class_names"] == ["Real", "Fake"]
    assert info.metadata["decision_threshold"] == pytest.approx(metrics["val_youden_threshold"])
    assert info.metadata["image_size"] == 32


def test_params_tags_and_artifacts(trained):
    params, tags = trained.run.data.params, trained.run.data.tags
    assert params["model.dropout"] == "0.2" and params["optimizer.lr"] == "0.01"
    assert params["data.positive_class"] == "Fake" and params["trainer.monitor"] == "val_auc"
    assert "runtime.precision" in params
    assert tags["model"] == "cnn_baseline" and tags["class_names"] == "Real,Fake"
    assert len(tags["dataset_fingerprint"]) == 16 and tags["git_commit"]
    client, run_id = trained.client, trained.run.info.run_id
    artifacts = {f.path for f in client.list_artifacts(run_id, "plots")} | {
        f.path for f in client.list_artifacts(run_id)
    }
    for name in ("plots/training_curves.png", "plots/roc_val.png", "plots/pr_test.png"):
        assert name in artifacts, name
    assert {"plots/confusion_matrix_test.png", "model_summary.txt", "config"} <= artifacts


def test_registered_version_tags_are_the_best_epoch(trained):
    (version,) = trained.client.search_model_versions("name='deepfake-detector'")
    best = int(trained.run.data.metrics["best_epoch"])
    assert version.run_id == trained.run.info.run_id
    assert version.tags["best_epoch"] == str(best)
    assert float(version.tags["val_auc"]) == pytest.approx(trained.history("val_auc")[best])


def test_registered_model_in_a_fresh_process_scores_the_leaderboard_row(trained, tmp_path):
    """predict (cwd outside the project, no MLFLOW_*) reproduces the row's val_auc and epoch."""
    board = tmp_path / "board.csv"
    result = detect(["leaderboard", "--tracking-uri", trained.uri, "--out", str(board)], tmp_path)
    assert result.returncode == 0, result.stderr
    row = pd.read_csv(board).iloc[0]
    assert int(row["epoch"]) == int(trained.run.data.metrics["best_epoch"])
    predicted = tmp_path / "val.csv"
    folder = trained.data / "Validation"
    result = detect(
        [
            "predict",
            "models:/deepfake-detector/1",
            str(folder),
            "--tracking-uri",
            trained.uri,
            "--out",
            str(predicted),
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    scores = read_predictions(predicted.read_text())
    labels = np.array([int(Path(path).parent.name == "Fake") for path in scores])
    assert roc_auc(labels, np.array(list(scores.values()))) == pytest.approx(
        row["val_auc"], abs=1e-6
    )
    assert row["test_auc"] == pytest.approx(trained.run.data.metrics["test_auc"])
    assert not (tmp_path / "mlflow.db").exists()


def test_summary_names_best_epoch_and_ui_url(trained):
    experiment = trained.run.info.experiment_id
    assert f"best epoch {int(trained.run.data.metrics['best_epoch'])} by val_auc" in trained.stdout
    assert f"/#/experiments/{experiment}/runs/{trained.run.info.run_id}" in trained.stdout


def test_run_name_says_what_changed_through_hydra(trained):
    assert trained.run.info.run_name == (
        "cnn_baseline-image_size=32-epochs=3-batch_size=8-dropout=0.2-lr=0.01"
    )


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.epochs=0", "trainer.epochs=0"),
        ("trainer.monitor=val_tp", "trainer.monitor"),
        ("trainer.precision=fp16", "trainer.precision"),
        ("model.dropout=1.5", "model.dropout=1.5"),
        ("data.image_size=7", "data.image_size=7"),
    ],
)
def test_config_errors_stop_before_any_run(tmp_path, tiny_data, override, key):
    uri, result = train_cli(tiny_data, tmp_path, override)
    assert result.returncode == 2
    assert key in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_same_seed_same_first_epoch(tiny_cfg, store_uri):
    cfg = tiny_cfg("seed=7", "trainer.epochs=1", "tracking.log_model=false")
    run_training(cfg)
    run_training(cfg)
    client = store_client(store_uri)
    runs = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    first, second = (r.data.metrics for r in runs)
    for key in EPOCH_KEYS:
        assert first[key] == pytest.approx(second[key], rel=1e-5, abs=1e-6), key
