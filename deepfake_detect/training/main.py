"""Hydra entry point: ``python -m deepfake_detect.train`` / ``deepfake-train``.

Thin on purpose: compose the config, check and decode the data (before any run exists),
open a tracked MLflow run and hand over to :mod:`deepfake_detect.training.fit`.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time

import hydra
from omegaconf import DictConfig, OmegaConf

import deepfake_detect  # noqa: F401  (registers the config resolvers)
from deepfake_detect.config.paths import DEFAULT_TRACKING_URI
from deepfake_detect.config.run_naming import JobContext, current_job, run_name
from deepfake_detect.config.validation import ConfigError, RunFailed, check_training_config
from deepfake_detect.tracking.store import (
    ensure_experiment,
    flatten,
    git_commit,
    resolve_tracking_uri,
    store_client,
)
from deepfake_detect.tracking.vocabulary import (
    CLASS_NAMES_TAG,
    DATASET_TAG,
    FINGERPRINT_TAG,
    GIT_COMMIT_TAG,
    MODEL_TAG,
    PARAM_VALUE_LIMIT,
    PARENT_TAG,
    POSITIVE_CLASS_TAG,
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
        MODEL_TAG: str(cfg.model.name),
        GIT_COMMIT_TAG: git_commit(),
        "hydra_overrides": " ".join(job.overrides),
        DATASET_TAG: str(cfg.data.name),
        FINGERPRINT_TAG: fingerprint,
        CLASS_NAMES_TAG: ",".join(classes),
        POSITIVE_CLASS_TAG: str(cfg.data.positive_class),
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
    """Where to see the run: the server itself, ``make ui`` for the project store, else the
    command that serves this store."""
    page = f"/#/experiments/{experiment_id}/runs/{run_id}"
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/") + page
    if uri == DEFAULT_TRACKING_URI:
        return f"http://127.0.0.1:5000{page}  (make ui; with PORT=N use that port)"
    return f"http://127.0.0.1:5000{page}  (after: mlflow ui --backend-store-uri {uri})"


def print_summary(result, name: str, url: str) -> None:  # result: training.fit.FitResult
    """Best epoch, its val/test metrics and where to look."""
    keys = ("auc", "acc", "precision", "recall", "loss")
    lines = [f"run {name}: best epoch {result.best_epoch} by {result.monitor}"]
    if result.pruned_epoch is not None:
        lines.append(f"  pruned after epoch {result.pruned_epoch} (sweep.pruning)")
    for split, metrics in (("val", result.val_metrics), ("test", result.test_metrics)):
        if metrics:
            shown = "  ".join(f"{key} {metrics[key]:.4f}" for key in keys)
            lines.append(f"  {split:<4} {shown}  (threshold 0.5)")
    lines.append(f"  decision threshold (val Youden): {result.threshold:.4f}")
    if result.registered_version:
        lines.append(f"  registered as version {result.registered_version}")
    lines.append(f"  open: {url}")
    print("\n".join(lines))


def run_training(cfg: DictConfig, job: JobContext | None = None) -> float:
    """Train one configuration end to end; return the objective (best ``trainer.monitor``)."""
    from mlflow.entities import Param

    from deepfake_detect.data.prepare import prepare_data
    from deepfake_detect.tracking.lifecycle import tracked_run

    job = job or current_job()
    check_training_config(cfg)
    load_start = time.perf_counter()
    data = prepare_data(cfg.data)
    load_seconds = time.perf_counter() - load_start
    uri = resolve_tracking_uri(cfg.tracking.uri)
    experiment_id = ensure_experiment(uri, str(cfg.tracking.experiment))
    client = store_client(uri)
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
        result = fit_and_log(
            cfg, data, client, run_id, should_register(cfg, job), job.parent_run_id
        )
    print_summary(result, name, run_url(uri, experiment_id, run_id))
    print(f"MLflow run {run_id} ({name}) in experiment {cfg.tracking.experiment!r} at {uri}")
    if result.pruned_epoch is not None:
        from deepfake_detect.training.pruning import PrunedObjective

        return PrunedObjective(result.objective, result.pruned_epoch, result.monitor_history)
    return result.objective


def user_error_status(error: BaseException) -> int | None:
    """Exit status for an error the user fixes (2: config or data, 1: the run failed for a
    stated reason); None for anything else (a bug: its traceback is worth seeing)."""
    from hydra.errors import InstantiationException

    from deepfake_detect.data.layout import DataError

    if isinstance(error, (ConfigError, DataError, InstantiationException)):
        return 2
    if isinstance(error, RunFailed):
        return 1
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line (Hydra's instantiation errors span several)."""
    return " ".join(str(error).split())


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train; in a multirun a failing job is recorded FAILED and the sweep goes on.

    In a single run a config, data or NaN error is one line on stderr (exit status 2 or 1;
    ``HYDRA_FULL_ERROR=1`` shows the traceback); its run, if one exists, is FAILED.
    """
    from deepfake_detect.tracking.lifecycle import Terminated

    job = current_job()
    try:
        return run_training(cfg, job)
    except Terminated as stop:  # the run is KILLED; stop the whole command (a sweep too)
        print(f"error: {stop}; the run is marked KILLED", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:
        status = user_error_status(error)
        if job.is_multirun:
            if status is None:
                log.exception("sweep job %s failed; the sweep continues", job.job_num)
            else:
                log.error(
                    "sweep job %s failed: %s; the sweep continues", job.job_num, one_line(error)
                )
            return math.nan
        if status is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(status)


if __name__ == "__main__":
    main()
