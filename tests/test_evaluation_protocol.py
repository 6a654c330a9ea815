"""The evaluation protocol end to end through the real CLI: one run per (dataset, split)
with metrics, robustness, calibration, error review, Grad-CAM and scores; the cross-dataset
matrix; promotion gated on robustness."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric, RunTag

from deepfake_detect.data.synthetic import generate_dataset
from deepfake_detect.tracking.store import store_client
from tests.conftest import TINY_SIZE, detect, run_cli, tiny_overrides

pytestmark = pytest.mark.training
NAME = "deepfake-detector"
EVAL = "deepfake_detect-evaluation"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """One registered tiny model and a second dataset with stronger artefacts."""
    home = tmp_path_factory.mktemp("protocol")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    other = home / "synthetic_s1"
    generate_dataset(other, TINY_SIZE, {"Test": 8}, seed=3, strength=2.0)
    result = run_cli(
        ["-m", "deepfake_detect.train", *tiny_overrides(tiny_data, uri, home / "cache")],
        cwd=home,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return home, uri, other


def evaluation_runs(uri: str):
    client = store_client(uri)
    experiment = client.get_experiment_by_name(EVAL)
    return client, client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def test_evaluate_logs_the_protocol_for_each_dataset_and_matrix_reads_it(
    trained, tiny_data, tmp_path
):
    home, uri, other = trained
    args = ["evaluate", f"models:/{NAME}/1", "--tracking-uri", uri, "--review", "3"]
    result = detect([*args, "--data", str(tiny_data), "--data", str(other)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("test_eer", "test_ap", "test_ece", "JPEG quality 50", "Gaussian blur sigma 2"):
        assert line in result.stdout
    assert "robustness: JPEG quality 90: 16/16 images" in result.stderr  # progress
    client, runs = evaluation_runs(uri)
    assert [r.data.tags["data_root"] for r in runs] == [str(tiny_data), str(other)]
    for run in runs:
        assert run.info.status == "FINISHED"
        metrics, run_id = run.data.metrics, run.info.run_id
        for key in ("auc", "eer", "ap", "ece", "acc_at_threshold", "jpeg50_auc", "blur1_eer"):
            assert f"test_{key}" in metrics, key
        assert 0 <= metrics["test_eer"] <= 1 and 0 <= metrics["test_ece"] <= 1
        files = {f.path for d in ("", "plots", "review") for f in client.list_artifacts(run_id, d)}
        assert {
            "review/errors.png",
            "review/gradcam.png",
            "plots/reliability_test.png",
            "plots/robustness_test.png",
            "scores.csv",
            "robustness.csv",
        } <= files
        scores = client.download_artifacts(run_id, "scores.csv", str(tmp_path / run_id))
        rows = list(csv.DictReader(io.StringIO(Path(scores).read_text())))
        assert len(rows) == 16 and {"path", "label", "score", "jpeg50", "blur2"} <= set(rows[0])
        assert {row["label"] for row in rows} == {"Real", "Fake"}
    version = client.get_model_version(NAME, "1")
    assert version.tags["evaluation.last_run_id"] == runs[-1].info.run_id
    assert float(version.tags["evaluation.synthetic_s1.test_auc"]) == pytest.approx(
        runs[-1].data.metrics["test_auc"], abs=1e-6
    )
    assert runs[0].data.tags["train_dataset"] == tiny_data.name

    again = detect([*args, "--data", str(other), "--robustness", "none", "--no-gradcam"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 earlier evaluation run(s)" in again.stdout and "new run" in again.stdout
    _, runs_now = evaluation_runs(uri)
    assert len(runs_now) == 3 and "test_jpeg50_auc" not in runs_now[-1].data.metrics

    out = tmp_path / "res" / "cd.csv"
    matrix = detect(["matrix", "--tracking-uri", uri, "--out", str(out)], tmp_path)
    assert matrix.returncode == 0, matrix.stderr
    assert f"{tiny_data.name}/Test" in matrix.stdout and "synthetic_s1/Test" in matrix.stdout
    table = list(csv.reader(io.StringIO((out.parent / "cd_auc.csv").read_text())))
    assert table[0] == ["model", f"{tiny_data.name}/Test", "synthetic_s1/Test"]
    assert table[1][0] == f"{NAME} v1 ({tiny_data.name})"
    newest = runs_now[-1].data.metrics["test_auc"]  # the rerun, not the first evaluation
    assert float(table[1][2]) == pytest.approx(newest, abs=1e-6)
    assert (out.parent / "cd_eer.png").stat().st_size > 0


def test_promote_gates_on_the_jpeg50_auc_drop(trained, tmp_path):
    home, uri, _ = trained
    client = store_client(uri)
    (version,) = client.search_model_versions(f"name = '{NAME}'")
    promote = ["promote", "--tracking-uri", uri, "--dry-run", "--max-robustness-drop"]
    # an evaluation of this run where JPEG 50 costs 0.1 AUC (newest: it decides)
    experiment = client.get_experiment_by_name(EVAL)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EVAL)
    run = client.create_run(
        experiment_id,
        tags={"run_type": "evaluation", "source_run_id": version.run_id, "split": "Test"},
    )
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("test_auc", 0.9, now, 0), Metric("test_jpeg50_auc", 0.8, now, 0)],
        tags=[RunTag("note", "planted")],
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    refused = detect([*promote, "0.05"], tmp_path)
    assert refused.returncode == 2
    assert "loses 0.1000 AUC at JPEG quality 50" in refused.stderr
    assert "nothing was changed" in refused.stderr
    allowed = detect([*promote, "0.2"], tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert "[dry run] would move" in allowed.stdout


def test_promote_without_an_evaluation_is_refused(tiny_data, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        [
            "-m",
            "deepfake_detect.train",
            *tiny_overrides(tiny_data, uri, tmp_path / "cache"),
            "trainer.epochs=1",
            "registry.register=false",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    refused = detect(["promote", "--tracking-uri", uri, "--max-robustness-drop", "0.05"], tmp_path)
    assert refused.returncode == 2
    assert "needs an evaluation" in refused.stderr and "deepfake-detect evaluate" in refused.stderr
    assert not store_client(uri).search_registered_models()
