"""Hydra entry point: ``python -m deepfake_detect.train`` / ``deepfake-train``.

Thin on purpose: compose the config, check and decode the data (before any run exists),
open a tracked MLflow run and hand over to :mod:`deepfake_detect.training.fit`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from deepfake_detect.config.native_logs import import_tensorflow
from deepfake_detect.config.paths import DEFAULT_TRACKING_URI
from deepfake_detect.config.resolvers import register_resolvers
from deepfake_detect.config.run_naming import JobContext, current_job, run_name
from deepfake_detect.config.validation import ConfigError, RunFailed, check_training_config
from deepfake_detect.tracking.health import (
    StoreUnavailableError,
    check_store_reachable,
    unwritable_store_cause,
)
from deepfake_detect.tracking.run_inputs import environment_tags, log_dataset_input, source_tags
from deepfake_detect.tracking.store import (
    credentials_refused,
    ensure_experiment,
    error_line,
    flatten,
    git_commit,
    redact,
    resolve_tracking_uri,
    store_client,
    suppress_mlflow_run_urls,
)
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    CLASS_NAMES_TAG,
    CONFIG_HASH_TAG,
    DATASET_TAG,
    ERROR_TAG,
    FINGERPRINT_TAG,
    GIT_COMMIT_TAG,
    MODEL_TAG,
    OVERRIDES_JSON_TAG,
    PARAM_VALUE_LIMIT,
    PARENT_TAG,
    POSITIVE_CLASS_TAG,
    RESUMABLE_TAG,
    RESUME_CHANGES_TAG,
    RESUME_COUNT_TAG,
    RUN_TYPE_TAG,
    TAG_VALUE_LIMIT,
    TRAINING,
)
from deepfake_detect.training.hydra_redaction import redact_hydra_outputs, redact_log_records

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra composes conf/ (its ${dfd.*:} interpolations)


def log_training_data(client, run_id: str, cfg: DictConfig, data) -> None:
    """The training data as the run's MLflow dataset input (``data``: PreparedData)."""
    counts = {"train": len(data.train), "val": len(data.val)}
    if data.test is not None:
        counts["test"] = len(data.test)
    log_dataset_input(
        client, run_id, str(cfg.data.name), data.fingerprint, data.root, counts, data.class_names
    )


def job_tags(cfg: DictConfig, job: JobContext, digest: str) -> dict[str, str]:
    """Tags every attempt sets: what kind of run, which config (hash), under which parent."""
    tags = {
        **source_tags("deepfake_detect.train"),
        RUN_TYPE_TAG: TRAINING,
        MODEL_TAG: str(cfg.model.name),
        GIT_COMMIT_TAG: git_commit(),
        "hydra_overrides": redact(" ".join(job.overrides)),
        OVERRIDES_JSON_TAG: json.dumps([redact(o) for o in job.overrides])[:TAG_VALUE_LIMIT],
        **environment_tags(),
        **{str(k): str(v) for k, v in (OmegaConf.select(cfg, "tracking.tags") or {}).items()},
        DATASET_TAG: str(cfg.data.name),
        CONFIG_HASH_TAG: digest,
        POSITIVE_CLASS_TAG: str(cfg.data.positive_class),
    }
    if job.parent_run_id:
        tags[PARENT_TAG] = job.parent_run_id
        tags["sweep_run_id"] = job.parent_run_id
    return tags


def run_tags(cfg: DictConfig, job: JobContext, digest: str, data) -> dict[str, str]:
    """Tags that say what was trained on what (and, in a sweep, under which parent);
    ``data`` is the PreparedData (its checks: skipped files, leakage, unexpected folders)."""
    tags = {
        **job_tags(cfg, job, digest),
        FINGERPRINT_TAG: data.fingerprint,
        CLASS_NAMES_TAG: ",".join(data.class_names),
        "skipped_images": str(data.skipped),
        "leakage_duplicates": str(data.leakage_duplicates),
    }
    if data.unexpected_folders:
        tags["unexpected_folders"] = ", ".join(data.unexpected_folders)[:TAG_VALUE_LIMIT]
    return tags


def config_params(cfg: DictConfig) -> dict[str, str]:
    """Every resolved config leaf as a dotted param (``model.dropout``)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {key: redact(str(value))[:PARAM_VALUE_LIMIT] for key, value in flatten(resolved)}


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
    uri = redact(uri)
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


def stale_after(cfg: DictConfig) -> float:
    """Seconds without a heartbeat after which a RUNNING run counts as gone (3 beats)."""
    return 3 * float(cfg.trainer.heartbeat_seconds)


def plan(
    cfg: DictConfig,
    job: JobContext,
    client,
    experiment_id: str,
    params: dict[str, str],
    fingerprint: str,
):
    """New run, resume (``trainer.resume``, a relaunched sweep job) or skip (-> RunPlan)."""
    from deepfake_detect.tracking.resume import plan_run

    return plan_run(
        client,
        experiment_id,
        params,
        fingerprint,
        OmegaConf.select(cfg, "trainer.resume"),
        job.parent_run_id,
        bool(OmegaConf.select(cfg, "sweep.skip_finished", default=True)),
        bool(OmegaConf.select(cfg, "trainer.resume_allow_changes", default=False)),
        stale_after(cfg),
    )


def finished_objective(client, run) -> float:
    """A skipped (already FINISHED) sweep job's objective: its monitor at its best epoch."""
    monitor = run.data.params.get("trainer.monitor", "val_auc")
    best = run.data.metrics.get(BEST_EPOCH_METRIC)
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, monitor)}
    return float(history.get(int(best), math.nan)) if best is not None else math.nan


def run_training(cfg: DictConfig, job: JobContext | None = None) -> float:
    """Train one configuration end to end (or continue or skip its run, see ``plan``);
    return the objective (best ``trainer.monitor``)."""
    from mlflow.entities import Param

    from deepfake_detect.data.prepare import prepare_data, scan_data
    from deepfake_detect.tracking.lifecycle import tracked_run
    from deepfake_detect.tracking.resume import config_hash
    from deepfake_detect.tracking.run_state import checkpoint_store

    job = job or current_job()
    check_training_config(cfg)
    uri = resolve_tracking_uri(cfg.tracking.uri)
    suppress_mlflow_run_urls()
    check_store_reachable(uri, float(cfg.tracking.connect_timeout))
    experiment_id = ensure_experiment(uri, str(cfg.tracking.experiment))
    client = store_client(uri)
    params = config_params(cfg)
    digest = config_hash(params)
    scanned = scan_data(cfg.data)
    decision = plan(cfg, job, client, experiment_id, params, scanned.fingerprint)
    if decision.action == "skip":
        run = decision.run
        print(f"sweep job {job.job_num}: already FINISHED as run {run.info.run_id}; skipped")
        return finished_objective(client, run)
    existing = decision.run
    attempt_number = int(existing.data.tags.get(RESUME_COUNT_TAG, "0")) + 1 if existing else 0
    load_start = time.perf_counter()
    data = prepare_data(cfg.data, scanned)
    load_seconds = time.perf_counter() - load_start
    changes = decision.changes
    name = existing.info.run_name if existing else run_name(str(cfg.run_name), job.overrides)
    tags = run_tags(cfg, job, digest, data)
    if existing:
        tags[RESUME_COUNT_TAG] = str(attempt_number)
        if changes:
            listed = "; ".join(f"{k}: {v}" for k, v in changes.items())
            tags[RESUME_CHANGES_TAG] = listed[:TAG_VALUE_LIMIT]

    import_tensorflow(verbose=bool(OmegaConf.select(cfg, "verbose", default=False)))
    from deepfake_detect.training.fit import Attempt, fit_and_log  # TensorFlow loads here

    checkpoint_dir = OmegaConf.select(cfg, "trainer.checkpoint.dir")
    attempt: Attempt | None = None

    def closing_tags(run_id: str, status: str) -> dict[str, str]:
        """A run that did not finish is resumable from its checkpoint, or from epoch 0 when
        it logged no epoch; otherwise it is not (``auto`` then starts a new run)."""
        if status == "FINISHED":
            return {RESUMABLE_TAG: "false"}
        has_checkpoint = attempt is None or bool(attempt.checkpoints.complete())
        no_epoch = not client.get_metric_history(run_id, "train_loss")
        return {RESUMABLE_TAG: "true" if has_checkpoint or no_epoch else "false"}

    with tracked_run(
        client,
        experiment_id,
        name,
        tags,
        existing=existing,
        heartbeat_seconds=float(cfg.trainer.heartbeat_seconds),
        closing_tags=closing_tags,
        system_metrics_seconds=OmegaConf.select(cfg, "tracking.system_metrics_seconds"),
    ) as run:
        run_id = run.info.run_id
        logged = existing.data.params if existing else {}
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items() if k not in logged])
        client.log_metric(run_id, "data_load_seconds", load_seconds, step=attempt_number)
        if not existing:
            log_training_data(client, run_id, cfg, data)
        if data.skipped:
            client.log_metric(run_id, "skipped_images", data.skipped, step=attempt_number)
        attempt = Attempt(
            attempt_number,
            checkpoint_store(uri, run_id, checkpoint_dir, Path(str(cfg.paths.log_dir))),
        )
        if existing:
            print(f"resuming run {run_id} ({name}), attempt {attempt_number + 1}")
        result = fit_and_log(
            cfg, data, client, run_id, should_register(cfg, job), attempt, job.parent_run_id
        )
    if not OmegaConf.select(cfg, "trainer.checkpoint.keep", default=False):
        attempt.checkpoints.remove(client, run_id)
    print_summary(result, name, run_url(uri, experiment_id, run_id))
    where = redact(uri)
    print(f"MLflow run {run_id} ({name}) in experiment {cfg.tracking.experiment!r} at {where}")
    if result.pruned_epoch is not None:
        from deepfake_detect.training.pruning import PrunedObjective

        return PrunedObjective(result.objective, result.pruned_epoch, result.monitor_history)
    return result.objective


def record_failed_job(cfg: DictConfig, job: JobContext, error: BaseException) -> None:
    """A sweep job that failed before its run existed (bad data at one grid point) still gets
    a FAILED run under the parent, so the sweep counts it and a relaunch retries it."""
    from mlflow.entities import Param

    from deepfake_detect.tracking.lifecycle import close_run
    from deepfake_detect.tracking.resume import config_hash

    try:
        uri = resolve_tracking_uri(cfg.tracking.uri)
        client = store_client(uri)
        experiment_id = ensure_experiment(uri, str(cfg.tracking.experiment))
        params = config_params(cfg)
        tags = job_tags(cfg, job, config_hash(params))
        tags[ERROR_TAG] = one_line(error)[:TAG_VALUE_LIMIT]
        run = client.create_run(
            experiment_id, run_name=run_name(str(cfg.run_name), job.overrides), tags=tags
        )
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        close_run(client, run.info.run_id, "FAILED", None, lambda *_: {RESUMABLE_TAG: "true"})
    except Exception as record_error:  # the store itself is the problem: the log says it
        log.error("sweep job %s: could not record its failure: %s", job.job_num, record_error)


def user_error_status(error: BaseException) -> int | None:
    """Exit status for an error the user fixes (2: config or data, 1: the run failed for a
    stated reason); None for anything else (a bug: its traceback is worth seeing)."""
    from hydra.errors import InstantiationException

    from deepfake_detect.data.layout import DataError

    if isinstance(error, (ConfigError, DataError, InstantiationException)):
        return 2
    if credentials_refused(error):
        return 2
    if isinstance(error, (RunFailed, StoreUnavailableError)):
        return 1
    if unwritable_store_cause(error):
        return 1
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line (Hydra's instantiation errors span several); for a
    full disk or read-only store, the cause first."""
    cause = unwritable_store_cause(error)
    if cause and not isinstance(error, (ConfigError, RunFailed)):
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"the tracking store or its artifacts cannot be written: {cause} ({first[:300]})"
    if credentials_refused(error):
        return error_line(error)
    return " ".join(str(error).split())


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train; in a multirun a failing job is recorded FAILED and the sweep goes on.

    In a single run a config, data or NaN error is one line on stderr (exit status 2 or 1;
    ``HYDRA_FULL_ERROR=1`` shows the traceback); its run, if one exists, is FAILED.
    """
    from deepfake_detect.tracking.lifecycle import Terminated
    from deepfake_detect.tracking.resume import ResumeError

    redact_hydra_outputs()
    redact_log_records()
    job = current_job()
    try:
        return run_training(cfg, job)
    except Terminated as stop:  # the run is KILLED; stop the whole command (a sweep too)
        how = (
            "run the same multirun command again to continue the sweep"
            if job.is_multirun
            else "add trainer.resume=auto (or trainer.resume=<run id>) to the same command"
        )
        print(f"error: {stop}; the run is marked KILLED and can continue: {how}", file=sys.stderr)
        sys.exit(stop.exit_status)
    except Exception as error:
        status = user_error_status(error)
        if job.is_multirun:
            if not getattr(error, "mlflow_run_id", None) and not isinstance(error, ResumeError):
                record_failed_job(cfg, job, error)
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
