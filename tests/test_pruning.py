"""Sweep trial pruning (``sweep.pruning=median``): the rule, a real grid sweep and a real Optuna
sweep whose trials' val_auc is scripted per job (tests.helpers.SCRIPTED_VAL_AUC)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from deepfake_detect.tracking.vocabulary import PRUNED_EPOCH_TAG, PRUNED_TAG
from deepfake_detect.training.pruning import PrunedObjective, is_worse_than_median
from tests.conftest import run_cli
from tests.test_sweeps import multirun

SCRIPTED = [
    "+trainer.callbacks.scripted._target_=tests.helpers.ScriptedValAuc",
    "trainer.epochs=4",
    "sweep.pruning=median",
    "sweep.pruning_warmup=2",
]


@pytest.mark.parametrize(
    ("best", "siblings", "higher", "worse"),
    [
        (0.55, [0.7], True, True),
        (0.75, [0.7, 0.55], True, False),  # median 0.625
        (0.625, [0.7, 0.55], True, False),  # equal to the median: kept
        (0.3, [0.2, 0.4, 0.5], False, False),  # a loss: lower is better, median 0.4
        (0.45, [0.2, 0.4, 0.5], False, True),
        (0.1, [], True, False),  # nothing finished yet
        (0.1, [math.nan], True, False),  # no finite sibling value
        (math.nan, [0.5], True, True),  # a trial without a value is worse
    ],
)
def test_median_rule(best, siblings, higher, worse):
    assert is_worse_than_median(best, siblings, higher) is worse


def test_pruned_objective_is_a_float_that_survives_pickling():
    import pickle

    value = pickle.loads(pickle.dumps(PrunedObjective(0.75, 2, [0.65, 0.75, 0.78])))
    assert isinstance(value, PrunedObjective) and float(value) == 0.75
    assert (value.epoch, value.history) == (2, [0.65, 0.75, 0.78])


def test_pruning_is_off_unless_asked():
    result = run_cli(["-m", "deepfake_detect.train", "--cfg", "job", "--package", "sweep"])
    assert result.returncode == 0, result.stderr
    assert "pruning: null" in result.stdout


@pytest.mark.parametrize("value", ["sweep.pruning=mean", "sweep.pruning_warmup=0"])
def test_bad_pruning_config_is_one_line_before_any_run(tmp_path, value):
    uri = f"tracking.uri=sqlite:///{tmp_path}/m.db"
    result = run_cli(["-m", "deepfake_detect.train", uri, f"data.root={tmp_path}/none", value])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {value.split('=')[0]}=")
    assert not (tmp_path / "m.db").exists()


def steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


@pytest.mark.slow
@pytest.mark.training
def test_grid_sweep_prunes_trials_worse_than_the_finished_median(tiny_data, tmp_path):
    client, parent, children = multirun(tiny_data, tmp_path, *SCRIPTED, "model.dropout=0.0,0.1,0.2")
    by_dropout = {c.data.params["model.dropout"]: c for c in children}
    assert sorted(by_dropout) == ["0.0", "0.1", "0.2"]
    kept, early, late = by_dropout["0.0"], by_dropout["0.1"], by_dropout["0.2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert PRUNED_TAG not in kept.data.tags and steps(client, kept.info.run_id, "val_auc") == [
        0,
        1,
        2,
        3,
    ]
    for child, epoch in ((early, 1), (late, 2)):
        assert child.data.tags[PRUNED_TAG] == "true"
        assert child.data.tags[PRUNED_EPOCH_TAG] == str(epoch)
        assert steps(client, child.info.run_id, "train_loss") == list(range(epoch + 1))
        assert "test_auc" in child.data.metrics  # its best epoch was still evaluated
        assert child.data.metrics["pruning_seconds"] >= 0
    assert client.get_run(parent.info.run_id).data.metrics["children_pruned"] == 2
    out = tmp_path / "board.csv"
    exported = run_cli(
        [
            "-m",
            "deepfake_detect.commands.cli",
            "leaderboard",
            "--tracking-uri",
            client.tracking_uri,
            "--out",
            str(out),
        ]
    )
    assert exported.returncode == 0, exported.stderr
    board = pd.read_csv(out).set_index("model.dropout")
    assert board["pruned"].to_dict() == {0.0: False, 0.1: True, 0.2: True}


@pytest.mark.slow
@pytest.mark.training
def test_optuna_sweep_tells_the_study_which_trials_were_pruned(tiny_data, tmp_path):
    output: list[str] = []
    client, parent, children = multirun(
        tiny_data,
        tmp_path,
        *SCRIPTED,
        "hparams_search=optuna_dropout_lr",
        "hydra.sweeper.n_trials=3",
        output=output,
    )
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert sorted(c.data.tags.get(PRUNED_EPOCH_TAG, "-") for c in children) == ["-", "1", "2"]
    text = output[0]
    assert "optuna trial 0: PRUNED" not in text
    assert "optuna trial 1: PRUNED (stopped after epoch 1" in text
    assert "optuna trial 2: PRUNED (stopped after epoch 2" in text


def test_median_pruner_against_fixed_sibling_histories(store_uri):
    """The callback on a real store: warm-up, the median of FINISHED siblings only, the last
    epoch, tags; a sibling that finishes later is read on the next refresh."""
    import keras
    from mlflow.entities import Metric
    from omegaconf import OmegaConf

    from deepfake_detect.tracking.store import store_client
    from deepfake_detect.tracking.vocabulary import PARENT_TAG, RUN_TYPE_TAG, SWEEP, TRAINING
    from deepfake_detect.training.fit import sweep_pruner

    client = store_client(store_uri)
    experiment = client.create_experiment("pruning")
    parent = client.create_run(experiment, tags={RUN_TYPE_TAG: SWEEP}).info.run_id

    def trial(values: list[float], status: str | None = "FINISHED") -> str:
        tags = {RUN_TYPE_TAG: TRAINING, PARENT_TAG: parent}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        metrics = [Metric("val_auc", v, 1000 + i, i) for i, v in enumerate(values)]
        client.log_batch(run_id, metrics=metrics)
        if status:
            client.set_terminated(run_id, status)
        return run_id

    trial([0.6, 0.7, 0.8, 0.9])
    trial([0.5, 0.9])  # stopped after epoch 1: counts at epochs 0 and 1 only
    trial([0.99] * 4, status=None)  # still running: not a finished sibling
    trial([0.99] * 4, status="FAILED")  # failed: not counted either
    late = trial([0.95] * 4, status=None)

    def pruner_for(run_id: str, pruning: str | None = "median", strategy: str = "default"):
        cfg = OmegaConf.create(
            {
                "sweep": {"pruning": pruning, "pruning_warmup": 2},
                "trainer": {"monitor": "val_auc", "strategy": strategy},
            }
        )
        pruner = sweep_pruner(cfg, client, run_id, parent)
        if pruner is not None:
            pruner.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
            pruner.set_params({"epochs": 4})
        return pruner

    assert pruner_for(trial([], None), pruning=None) is None  # off unless asked
    assert pruner_for(trial([], None), strategy="multi_worker") is None  # workers would hang
    worse = pruner_for(trial([], status=None))
    worse.on_epoch_end(0, {"val_auc": 0.1})  # warm-up: never judged
    assert not getattr(worse.model, "stop_training", False) and worse.siblings.histories == {}
    worse.on_epoch_end(1, {"val_auc": 0.75})  # siblings at epoch 1: 0.7, 0.9 -> median 0.8
    assert worse.model.stop_training and worse.pruned_epoch == 1
    tags = client.get_run(worse.run_id).data.tags
    assert (tags[PRUNED_TAG], tags[PRUNED_EPOCH_TAG]) == ("true", "1")

    good = pruner_for(trial([], status=None))
    good.on_epoch_end(0, {"val_auc": 0.85})
    good.on_epoch_end(1, {"val_auc": 0.2})  # its best so far (0.85) counts: above 0.8
    assert not getattr(good.model, "stop_training", False)
    client.set_terminated(late, "FINISHED")  # a sibling finishes: read on the next refresh
    good.on_epoch_end(2, {"val_auc": 0.3})  # epoch 2: siblings 0.8 and 0.95 -> median 0.875
    assert good.model.stop_training and good.pruned_epoch == 2

    last = pruner_for(trial([], status=None))
    for epoch in range(4):
        last.on_epoch_end(epoch, {"val_auc": 0.9 if epoch < 3 else 0.0})
    assert last.pruned_epoch is None  # the last epoch is never pruned: nothing left to save
    assert PRUNED_TAG not in client.get_run(last.run_id).data.tags
