"""The same command gives the same numbers; ``reproduce RUN_ID`` re-runs a run and compares
(real trainings in subprocesses, temp SQLite stores)."""

from __future__ import annotations

import shutil

import pytest

from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import VERSIONED_PACKAGES
from deepfake_detect.training.hardware import INTRA_OP_THREADS_ENV
from deepfake_detect.training.reproduce import Difference, compare_runs
from tests.conftest import detect, run_cli, tiny_overrides

pytestmark = pytest.mark.training
WALL_CLOCK = ("fit_seconds", "val_metric_seconds", "checkpoint_seconds", "data_load_seconds")
WALL_CLOCK += ("pruning_seconds", "images_per_second")


def train(data, uri: str, cwd, *extra: str, env: dict | None = None):
    result = run_cli(
        ["-m", "deepfake_detect.train", *tiny_overrides(data, uri, cwd / "cache"), *extra],
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = store_client(uri)
    experiment = client.get_experiment_by_name("deepfake_detect")
    return client, client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])


def histories(client, run) -> dict[str, list[tuple[int, float]]]:
    """Every logged metric's whole history, except wall-clock timings and system metrics."""
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
        if key not in WALL_CLOCK and not key.startswith("system/")
    }


def test_reproduce_reruns_identically_lists_differences_and_refuses_other_data(tiny_data, tmp_path):
    """One original run, three uses: its reproduction (another process) logs the identical
    history of every metric, another seed's run differs and is listed, and a changed data
    folder or an unknown run is refused."""
    data = shutil.copytree(tiny_data, tmp_path / "data")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, (original,) = train(data, uri, tmp_path)
    run_id = original.info.run_id
    assert original.data.tags["deterministic"] == "true"
    assert {f"version.{p}" for p in VERSIONED_PACKAGES} <= set(original.data.tags)
    versions = len(client.search_model_versions("name = 'deepfake-detector'"))
    result = detect(["reproduce", run_id, "--tracking-uri", uri], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"reproduces {run_id}: all 31 metrics within 0" in result.stdout
    assert "val_eer" in result.stdout and "test_ap" in result.stdout
    copies = client.search_runs(
        [original.info.experiment_id], filter_string=f"tags.reproduces = '{run_id}'"
    )
    assert len(copies) == 1 and copies[0].info.status == "FINISHED"
    assert len(client.search_model_versions("name = 'deepfake-detector'")) == versions
    assert all(d.within(0) for d in compare_runs(client, original, copies[0]))
    logged = histories(client, original)  # every epoch of every metric, not only the best
    assert len(logged) > 30 and logged == histories(client, copies[0])

    _, (other, *_) = train(data, uri, tmp_path, "seed=7")
    differences = compare_runs(client, original, other)
    assert {d.key for d in differences if not d.within(0)} >= {"train_loss", "val_loss"}
    assert Difference("x", 0.5, None).within(1.0) is False  # missing on one side never matches
    assert Difference("x", float("nan"), float("nan")).within(0)

    (data / "Test" / "Real" / "real_00000.jpg").unlink()  # the data changed since
    changed = detect(["reproduce", run_id, "--tracking-uri", uri], tmp_path)
    assert changed.returncode == 2
    assert "fingerprint" in changed.stderr and original.data.tags["dataset_fingerprint"] in (
        changed.stderr
    )
    unknown = detect(["reproduce", "0" * 32, "--tracking-uri", uri], tmp_path)
    assert unknown.returncode == 2 and f"no run {'0' * 32}" in unknown.stderr


def test_reproduce_trains_on_the_original_thread_count(tiny_data, tmp_path):
    """The sums of an op depend on how many intra-op threads split it (the one cause of
    different numbers for the same seed found here: 1 vs 2 threads, i.e. another machine or
    CPU affinity). A float32 run trained on 2 threads, reproduced from a shell where
    TensorFlow would use 1, matches exactly because the reproduction pins 2."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    two, one = {INTRA_OP_THREADS_ENV: "2"}, {INTRA_OP_THREADS_ENV: "1"}
    client, (original,) = train(
        tiny_data, uri, tmp_path, "trainer.epochs=1", "trainer.precision=float32", env=two
    )
    run_id = original.info.run_id
    assert original.data.params["runtime.intra_op_threads"] == "2"
    result = detect(["reproduce", run_id, "--tracking-uri", uri], tmp_path, env=one)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"reproduces {run_id}: all 31 metrics within 0" in result.stdout
    (copy,) = client.search_runs(
        [original.info.experiment_id], filter_string=f"tags.reproduces = '{run_id}'"
    )
    assert copy.data.params["runtime.intra_op_threads"] == "2"

    # the control: the same command on 1 thread does differ, so the pinning was exercised
    _, (single, *_) = train(
        tiny_data, uri, tmp_path, "trainer.epochs=1", "trainer.precision=float32", env=one
    )
    if histories(client, single) == histories(client, original):
        pytest.skip("1 and 2 threads give the same sums at this size: pinning not exercised")
