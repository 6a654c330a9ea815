"""A real 2-epoch fit on tiny synthetic data against a temp SQLite store."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.vocabulary import EPOCH_KEYS, TEST_KEYS
from deepfake_detect.training.main import run_training


def only_run(uri: str, experiment: str = "deepfake_detect"):
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.fixture
def trained(tiny_cfg, store_uri):
    cfg = tiny_cfg("model.dropout=0.2", "optimizer.lr=0.002")
    objective = run_training(cfg)
    client, run = only_run(store_uri)
    return cfg, objective, client, run


def test_every_epoch_logs_the_18_keys_and_lr(trained):
    _, objective, client, run = trained
    assert run.info.status == "FINISHED"
    for key in [*EPOCH_KEYS, "lr"]:
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1], key
    aucs = [m.value for m in client.get_metric_history(run.info.run_id, "val_auc")]
    assert objective == pytest.approx(max(aucs))


def test_counts_and_accuracy_are_consistent(trained):
    _, _, client, run = trained
    for split, size in (("train", 32), ("val", 16)):
        for step in (0, 1):
            values = {
                name: next(
                    m.value
                    for m in client.get_metric_history(run.info.run_id, f"{split}_{name}")
                    if m.step == step
                )
                for name in ("tp", "fp", "tn", "fn", "acc")
            }
            n = values["tp"] + values["fp"] + values["tn"] + values["fn"]
            assert n == size
            assert values["acc"] == pytest.approx((values["tp"] + values["tn"]) / n, abs=1e-6)


def test_test_split_params_tags_and_artifacts(trained):
    cfg, _, client, run = trained
    metrics = run.data.metrics
    assert set(TEST_KEYS) <= set(metrics)
    assert sum(metrics[f"test_{k}"] for k in ("tp", "fp", "tn", "fn")) == 16
    params = run.data.params
    assert params["model.dropout"] == "0.2"
    assert params["optimizer.lr"] == "0.002"
    assert params["data.positive_class"] == "Fake"
    assert "runtime.precision" in params
    tags = run.data.tags
    assert tags["model"] == "cnn_baseline"
    assert tags["class_names"] == "Real,Fake"
    assert tags["positive_class"] == "Fake"
    assert len(tags["dataset_fingerprint"]) == 16
    assert tags["git_commit"]
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "plots")} | {
        f.path for f in client.list_artifacts(run.info.run_id)
    }
    for name in (
        "plots/training_curves.png",
        "plots/confusion_matrix_val.png",
        "plots/roc_val.png",
        "plots/pr_val.png",
        "plots/roc_test.png",
        "plots/pr_test.png",
        "plots/confusion_matrix_test.png",
        "model_summary.txt",
        "config",
    ):
        assert name in artifacts, name
    assert 0.0 < metrics["val_youden_threshold"] < 1.0


def test_model_loads_back_and_is_registered(trained, tiny_data):
    import mlflow

    _, _, client, run = trained
    versions = client.search_model_versions("name='deepfake-detector'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    tags = versions[0].tags
    assert tags["run_id"] == run.info.run_id and tags["model_config"] == "cnn_baseline"
    assert {"val_auc", "val_acc", "test_auc", "dataset_fingerprint", "git_commit"} <= set(tags)
    mlflow.set_tracking_uri(client.tracking_uri)
    model = mlflow.keras.load_model("models:/deepfake-detector/1")
    prob = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert prob.shape == (2, 1) and prob.dtype == np.float32


def test_run_name_says_what_changed(trained):
    _, _, _, run = trained
    assert run.info.run_name.startswith("cnn_baseline")


def test_same_seed_same_first_epoch(tiny_cfg, store_uri):
    cfg = tiny_cfg("seed=7", "trainer.epochs=1", "tracking.log_model=false")
    run_training(cfg)
    run_training(cfg)
    client = MlflowClient(tracking_uri=store_uri)
    runs = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    first, second = (r.data.metrics for r in runs)
    for key in EPOCH_KEYS:
        assert first[key] == pytest.approx(second[key], rel=1e-5, abs=1e-6), key
