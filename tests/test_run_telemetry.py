"""Runs record how they ran (MLflow system metrics, images per second) and commands start
quietly: no TensorFlow/absl/CUDA start-up banners unless asked for."""

from __future__ import annotations

import re

import pytest

from deepfake_detect.tracking.store import store_client
from tests.conftest import run_cli, tiny_overrides

pytestmark = pytest.mark.training
BANNERS = re.compile(r"cuInit|cudart|oneDNN|absl::InitializeLog|cpu_feature_guard")


def train(tiny_data, tmp_path, *extra: str):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = tiny_overrides(tiny_data, uri, tmp_path / "cache")
    result = run_cli(
        ["-m", "deepfake_detect.train", *overrides, "trainer.epochs=2", *extra],
        cwd=tmp_path,
        env={"TF_CPP_MIN_LOG_LEVEL": "0"},  # what a user's shell has: nothing set
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return uri, result


def test_training_is_quiet_and_logs_system_metrics_and_throughput(tiny_data, tmp_path):
    uri, result = train(tiny_data, tmp_path, "tracking.system_metrics_seconds=1")
    assert not BANNERS.search(result.stderr), result.stderr
    client = store_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    assert "system/cpu_utilization_percentage" in run.data.metrics
    assert "system/system_memory_usage_megabytes" in run.data.metrics
    speeds = client.get_metric_history(run.info.run_id, "images_per_second")
    assert sorted(m.step for m in speeds) == [0, 1] and all(m.value > 0 for m in speeds)


def test_verbose_keeps_the_banners_and_system_metrics_can_be_off(tiny_data, tmp_path):
    uri, result = train(tiny_data, tmp_path, "verbose=true", "tracking.system_metrics_seconds=0")
    assert BANNERS.search(result.stderr), "TensorFlow printed no banner: nothing was filtered"
    client = store_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    assert not [key for key in run.data.metrics if key.startswith("system/")]
