"""Real Hydra multiruns (subprocess): parent/child runs, joblib, Optuna, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import PARENT_TAG, RUN_TYPE_TAG, SWEEP
from tests.conftest import run_cli, tiny_overrides
from tests.helpers import write_separable_data

pytestmark = [pytest.mark.slow, pytest.mark.training]


def multirun(tiny_data: Path, tmp_path: Path, *overrides: str, output: list | None = None):
    """Run a multirun; its stdout+stderr is appended to ``output`` when given."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    overrides = (
        *tiny_overrides(tiny_data, uri, tmp_path / "cache"),
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *overrides,
    )
    result = run_cli(["-m", "deepfake_detect.train", "-m", *overrides], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if output is not None:
        output.append(result.stdout + result.stderr)
    client = store_client(uri)
    runs = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    parents = [r for r in runs if r.data.tags.get(RUN_TYPE_TAG) == SWEEP]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]
    assert len(runs) == 1 + len(children)
    return client, parent, children


def assert_complete_children(client, children, expected_grid):
    grid = {(c.data.params["model.dropout"], c.data.params["optimizer.lr"]) for c in children}
    assert grid == expected_grid
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("error")  # why, if not
        keys = set(child.data.metrics)
        assert not [k for k in keys if k.endswith("_1")], keys
        for key in ("train_loss", "val_auc", "val_tp", "lr"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [0, 1]
        assert "test_auc" in keys


GRID = {(d, lr) for d in ("0.1", "0.3") for lr in ("0.001", "0.01")}
GRID_ARGS = ("model.dropout=0.1,0.3", "optimizer.lr=0.001,0.01")


def test_grid_sweep_on_two_joblib_workers_loses_nothing(tiny_data, tmp_path):
    """A 2x2 grid on two reused joblib worker processes (the sequential launcher's sweeps run
    in test_long_runs and below): every child complete, the parent's summary and artifacts."""
    client, parent, children = multirun(
        tiny_data, tmp_path, "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", *GRID_ARGS
    )
    assert_complete_children(client, children, GRID)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["children"] == 4
    assert parent.data.metrics["children_failed"] == 0
    best = max(
        children,
        key=lambda c: max(m.value for m in client.get_metric_history(c.info.run_id, "val_auc")),
    )
    assert parent.data.tags["best_child_run_id"] == best.info.run_id
    assert parent.data.params["sweep.model.dropout"] == "0.1,0.3"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_leaderboard.csv", "val_auc_by_dropout_lr.png"} <= artifacts
    # a reused worker's later trial starts from a clean Keras session: no "conv2d_4"
    summaries = {
        Path(
            client.download_artifacts(c.info.run_id, "model_summary.txt", str(tmp_path))
        ).read_text()
        for c in children
    }
    assert len(summaries) == 1 and "conv2d (Conv2D)" in summaries.pop()
    assert not any(v.run_id for v in client.search_model_versions("name='deepfake-detector'"))


def test_optuna_objective_is_the_registered_epochs_value(tmp_path_factory, tmp_path):
    """3 epochs, the last one sabotaged: the objective, the parent's best and each child's
    model (its best_epoch) agree, and none of them is the last epoch's value."""
    data = write_separable_data(tmp_path_factory.mktemp("separable"))
    client, parent, children = multirun(
        data,
        tmp_path,
        "hparams_search=optuna_dropout_lr",
        "hydra.sweeper.n_trials=3",
        "trainer.epochs=3",
        "+trainer.callbacks.sabotage._target_=tests.helpers.ZeroWeightsAtLastEpoch",
    )
    assert len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children)
    model_aucs = {}
    for child in children:
        history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val_auc")}
        best_epoch = int(child.data.metrics["best_epoch"])
        assert best_epoch < 2 and history[2] == 0.5
        model_aucs[child.info.run_id] = history[best_epoch]
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(model_aucs.values()), abs=1e-6)
    assert parent.data.metrics["best_val_auc"] == pytest.approx(max(model_aucs.values()), abs=1e-6)


def test_failing_job_does_not_stop_the_sweep(tiny_data, tmp_path):
    client, parent, children = multirun(
        tiny_data,
        tmp_path,
        "optimizer=sgd",
        "trainer.precision=float32",
        "optimizer.lr=0.01,1e30",  # the second job's loss becomes NaN: its run FAILS
        "trainer.epochs=3",
    )
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FINISHED"]
    assert (
        "loss became" in next(c for c in children if c.info.status == "FAILED").data.tags["error"]
    )
    assert parent.data.metrics["children_failed"] == 1
    assert parent.info.status == "FINISHED"


def test_slurm_launcher_composes():
    result = run_cli(["-m", "deepfake_detect.train", "hydra/launcher=slurm", "--cfg", "hydra"])
    assert result.returncode == 0, result.stderr
    launcher = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["gpus_per_node"] == 1


def test_failed_sweep_summary_leaves_parent_failed(store_uri, monkeypatch):
    from omegaconf import OmegaConf

    import deepfake_detect.leaderboard.sweep_summary as sweep_summary
    import deepfake_detect.training.sweep_callback as sweep_callback
    from deepfake_detect.tracking.store import ensure_experiment

    client = store_client(store_uri)
    parent = client.create_run(ensure_experiment(store_uri, "deepfake_detect"))
    callback = sweep_callback.MlflowSweepCallback()
    callback.uri, callback.parent_run_id = store_uri, parent.info.run_id

    def broken_summary(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sweep_summary, "summarise_sweep", broken_summary)
    with pytest.raises(RuntimeError):
        callback.on_multirun_end(OmegaConf.create({"tracking": {"experiment": "deepfake_detect"}}))
    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FAILED"
    assert "disk full" in run.data.tags["error"]
