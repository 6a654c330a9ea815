"""Runs with known per-epoch values, written through the real MlflowClient."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import PARENT_TAG, RUN_TYPE_TAG, SWEEP, TRAINING


@dataclass(frozen=True)
class Split:
    """One split at one epoch: loss, auc and the confusion counts (rates derived)."""

    loss: float
    auc: float
    tp: int
    fp: int
    tn: int
    fn: int

    def metrics(self, prefix: str, swap_counts: bool = False) -> dict[str, float]:
        n = self.tp + self.fp + self.tn + self.fn
        values = {
            "loss": self.loss,
            "acc": (self.tp + self.tn) / n,
            "precision": self.tp / (self.tp + self.fp),
            "recall": self.tp / (self.tp + self.fn),
            "auc": self.auc,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }
        if swap_counts:  # the seed's defect: counts pasted into the wrong columns
            values.update(tp=self.fn, fp=self.tn, tn=self.fp, fn=self.tp)
        return {f"{prefix}_{k}": float(v) for k, v in values.items()}


def log_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    epochs: list[tuple[Split, Split]],
    test: Split | None,
    params: dict[str, str],
    status: str = "FINISHED",
    parent: str | None = None,
    swap_counts: bool = False,
) -> str:
    tags = {RUN_TYPE_TAG: TRAINING}
    if parent:
        tags[PARENT_TAG] = parent
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    metrics = []
    for step, (train, val) in enumerate(epochs):
        values = {**train.metrics("train", swap_counts), **val.metrics("val", swap_counts)}
        metrics += [Metric(k, v, 1000 + step, step) for k, v in values.items()]
    # like the trainer: the model is the best epoch by val_auc (earliest on ties), and its
    # test metrics and best_epoch are logged at that step
    aucs = [val.auc for _, val in epochs]
    best = aucs.index(max(aucs))
    metrics.append(Metric("best_epoch", best, 5000, 0))
    if test is not None:
        metrics += [Metric(k, v, 5000, best) for k, v in test.metrics("test", swap_counts).items()]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(run_id, status)
    return run_id


def sweep_parent(client: MlflowClient, experiment_id: str) -> str:
    run = client.create_run(experiment_id, run_name="sweep-grid", tags={RUN_TYPE_TAG: SWEEP})
    client.log_batch(run.info.run_id, tags=[RunTag("note", "parent")])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def populate(uri: str) -> dict[str, str]:
    """Four runs of experiment ``golden``: best epoch != last, a failed one, a swapped one."""
    client = store_client(uri)
    eid = client.create_experiment("golden")
    params = {"model.dropout": "0.3", "optimizer.lr": "0.005", "model.name": "cnn_baseline"}
    ids = {}
    ids["baseline"] = log_run(
        client,
        eid,
        "cnn_baseline",
        [
            (Split(0.69, 0.60, 30, 20, 30, 20), Split(0.68, 0.80, 30, 10, 40, 20)),
            (Split(0.50, 0.80, 40, 10, 40, 10), Split(0.45, 0.90, 40, 10, 40, 10)),
            (Split(0.40, 0.90, 45, 5, 45, 5), Split(0.55, 0.85, 35, 15, 35, 15)),
        ],
        Split(0.5, 0.875, 40, 10, 40, 10),
        params,
    )
    ids["model_1"] = log_run(
        client,
        eid,
        "model_1",
        [
            (Split(0.60, 0.70, 30, 20, 30, 20), Split(0.62, 0.70, 30, 20, 30, 20)),
            (Split(0.30, 0.95, 45, 5, 45, 5), Split(0.25, 0.95, 45, 5, 45, 5)),
        ],
        Split(0.3, 0.9375, 45, 5, 45, 5),
        {**params, "model.dropout": "0.4", "model.name": "model_1"},
    )
    ids["failed"] = log_run(
        client,
        eid,
        "cnn_reid",
        [
            (Split(0.70, 0.50, 25, 25, 25, 25), Split(0.70, 0.55, 25, 25, 25, 25)),
        ],
        None,
        {**params, "model.name": "cnn_reid"},
        status="FAILED",
    )
    ids["swapped"] = log_run(
        client,
        eid,
        "efficientnetv2-b0_retrain",
        [
            (Split(0.65, 0.75, 40, 20, 30, 10), Split(0.66, 0.72, 40, 20, 30, 10)),
        ],
        Split(0.6, 0.7, 40, 20, 30, 10),
        {**params, "optimizer.lr": "0.001", "model.name": "efficientnetv2_b0"},
        swap_counts=True,
    )
    return ids
