"""Hydra entry point: ``python -m deepfake_detect.train`` / ``deepfake-train``.

Thin on purpose: compose the config, check and decode the data (before any run exists),
open a tracked MLflow run and hand over to :mod:`deepfake_detect.training.fit`.
"""

from __future__ import annotations

import logging
import math
import sys
import time

import hydra
from omegaconf import DictConfig, OmegaConf

import deepfake_detect  # noqa: F401  (registers the config resolvers)
from deepfake_detect.config.run_naming import JobContext, current_job, run_name
from deepfake_detect.config.validation import ConfigError, check_training_config
from deepfake_detect.tracking.store import (
    ensure_experiment,
    flatten,
    git_commit,
    resolve_tracking_uri,
)
from deepfake_detect.tracking.vocabulary import (
    PARAM_VALUE_LIMIT,
    PARENT_TAG,
    RUN_TYPE_TAG,
    TRAINING,
)

log = logging.getLogger(__name__)


def run_tags(
    cfg: DictConfig, job: JobContext, fingerprint: str, classes: list[str], skipped: int
) -> dict[str, str]:
    """Tags that say what was trained on what (and, in a sweep, under which parent)."""
    tags = {
        RUN_TYPE_TAG: TRAINING,
        "model": str(cfg.model.name),
        "git_commit": git_commit(),
        "hydra_overrides": " ".join(job.overrides),
        "dataset": str(cfg.data.name),
        "dataset_fingerprint": fingerprint,
        "class_names": ",".join(classes),
        "positive_class": str(cfg.data.positive_class),
        "skipped_images": str(skipped),
    }
    if job.parent_run_id:
        tags[PARENT_TAG] = job.parent_run_id
        tags["sweep_run_id"] = job.parent_run_id
    return tags


def config_params(cfg: DictConfig) -> dict[str, str]:
    """Every resolved config leaf as a dotted param (``model.dropout``)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {key: str(value)[:PARAM_VALUE_LIMIT] for key, value in flatten(resolved)}


def should_register(cfg: DictConfig, job: JobContext) -> str | None:
    """The registered model name to use, or None (``auto``: single runs only)."""
    register = cfg.registry.register
    if register == "auto":
        register = not job.is_multirun
    return str(cfg.registry.model_name) if register else None


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """Where to see the run: ``make ui`` for the project store, else the server itself."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def print_summary(result, name: str, url: str) -> None:  # result: training.fit.FitResult
    """Best epoch, its val/test metrics and where to look."""
    keys = ("auc", "acc", "precision", "recall", "loss")
    lines = [f"run {name}: best epoch {result.best_epoch} by {result.monitor}"]
    for split, metrics in (("val", result.val_metrics), ("test", result.test_metrics)):
        if metrics:
            shown = "  ".join(f"{key} {metrics[key]:.4f}" for key in keys)
            lines.append(f"  {split:<4} {shown}  (threshold 0.5)")
    lines.append(f"  decision threshold (val Youden): {result.threshold:.4f}")
    if result.registered_version:
        lines.append(f"  registered as version {result.registered_version}")
    lines.append(f"  open: {url}  (make ui)")
    print("\n".join(lines))


def run_training(cfg: DictConfig, job: JobContext | None = None) -> float:
    """Train one configuration end to end; return the objective (best ``trainer.monitor``)."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from deepfake_detect.data.prepare import prepare_data
    from deepfake_detect.tracking.lifecycle import tracked_run

    job = job or current_job()
    check_training_config(cfg)
    load_start = time.perf_counter()
    data = prepare_data(cfg.data)
    load_seconds = time.perf_counter() - load_start
    uri = resolve_tracking_uri(cfg.tracking.uri)
    experiment_id = ensure_experiment(uri, str(cfg.tracking.experiment))
    client = MlflowClient(tracking_uri=uri)
    name = run_name(str(cfg.run_name), job.overrides)
    tags = run_tags(cfg, job, data.fingerprint, data.class_names, data.skipped)

    from deepfake_detect.training.fit import fit_and_log  # TensorFlow loads here

    with tracked_run(client, experiment_id, name, tags) as run:
        run_id = run.info.run_id
        client.log_batch(
            run_id, params=[Param(key, value) for key, value in config_params(cfg).items()]
        )
        client.log_metric(run_id, "data_load_seconds", load_seconds)
        if data.skipped:
            client.log_metric(run_id, "skipped_images", data.skipped)
        result = fit_and_log(cfg, data, client, run_id, should_register(cfg, job))
    print_summary(result, name, run_url(uri, experiment_id, run_id))
    print(f"MLflow run {run_id} ({name}) in experiment {cfg.tracking.experiment!r} at {uri}")
    return result.objective


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train; in a multirun a failing job is recorded FAILED and the sweep goes on.

    A config or data error in a single run is one line on stderr and exit status 2.
    """
    from deepfake_detect.data.layout import DataError

    job = current_job()
    if not job.is_multirun:
        try:
            return run_training(cfg, job)
        except (ConfigError, DataError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    try:
        return run_training(cfg, job)
    except Exception:
        log.exception(
            "sweep job %s failed (its run, if one was opened, is FAILED); the sweep continues",
            job.job_num,
        )
        return math.nan


if __name__ == "__main__":
    main()
