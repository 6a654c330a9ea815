"""Runs with known per-epoch values, written through the real MlflowClient."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    EPOCH_KEYS,
    PARENT_TAG,
    RUN_TYPE_TAG,
    SWEEP,
    TEST_KEYS,
    TRAINING,
)


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


VALUES = (-0.5, 0.25, 0.5, 0.75, math.inf, math.nan)  # few values: ties, NaN, inf, negatives


def random_run_metrics(rng: random.Random) -> list[list[Metric]]:
    """Batches of one run's metrics, logged in order (later batches re-log some steps)."""
    epochs = rng.choice([0, 1, 3, 5])
    first, relogged = [], []
    for step in range(epochs):
        for key in EPOCH_KEYS:
            if rng.random() < 0.1:
                continue  # a missing value at this epoch
            first.append(Metric(key, rng.choice(VALUES), 1000 + step, step))
            if key == "val_loss":  # never re-logged: its ranking takes the one-window query
                continue
            if rng.random() < 0.08:  # a re-logged step: a later value wins
                relogged.append(Metric(key, rng.choice(VALUES), 3000 + step, step))
            elif rng.random() < 0.03:  # same timestamp twice: the larger value wins
                relogged.append(Metric(key, rng.choice(VALUES[:4]), 1000 + step, step))
    if epochs and rng.random() < 0.1:  # a broken best_epoch: ignored by both readers
        first.append(Metric(BEST_EPOCH_METRIC, rng.choice([-1, -0.5, math.inf, 1e20]), 4000, 0))
    elif epochs and rng.random() < 0.6:
        model_epoch = rng.randrange(epochs)
        first.append(Metric(BEST_EPOCH_METRIC, model_epoch, 4000, 0))
        first += [Metric(key, rng.choice(VALUES), 4000, model_epoch) for key in TEST_KEYS]
        if rng.random() < 0.2:  # a later best_epoch (a resumed run) replaces it
            relogged.append(Metric(BEST_EPOCH_METRIC, rng.randrange(epochs), 5000, 0))
    return [batch for batch in (first, relogged) if batch]


def add_many_runs(uri: str, experiment: str, random_runs: int, copies: int) -> int:
    """Experiment ``experiment`` with ``random_runs`` random histories (every tenth run then
    deleted) logged through the client, and ``copies`` SQL copies of a finished run without
    metrics (seconds, not a minute of client calls): past a server's 1,000-run page. Returns
    how many active runs it holds."""
    import uuid

    import sqlalchemy as sa

    client = store_client(uri)
    experiment_id = client.create_experiment(experiment)
    rng = random.Random(13)
    for index in range(random_runs):
        run_id = client.create_run(experiment_id, run_name=f"random{index:03d}").info.run_id
        for batch in random_run_metrics(rng):
            client.log_batch(run_id, metrics=batch)
        client.set_terminated(run_id, rng.choice(["FINISHED", "FINISHED", "FAILED"]))
        if index % 10 == 0:
            client.delete_run(run_id)
    template = client.create_run(experiment_id, run_name="copy").info.run_id
    client.set_terminated(template, "FINISHED")
    engine = sa.create_engine(uri)
    columns = [column["name"] for column in sa.inspect(engine).get_columns("runs")]
    with engine.begin() as db:
        row = db.execute(sa.text("SELECT * FROM runs WHERE run_uuid = :id"), {"id": template})
        values = dict(row.mappings().one())
        rows = [
            {**values, "run_uuid": uuid.uuid4().hex, "name": f"copy{index:04d}"}
            for index in range(copies)
        ]
        names = ", ".join(columns)
        placeholders = ", ".join(f":{column}" for column in columns)
        db.execute(sa.text(f"INSERT INTO runs ({names}) VALUES ({placeholders})"), rows)
    engine.dispose()
    return random_runs - len(range(0, random_runs, 10)) + 1 + copies
