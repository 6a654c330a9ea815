"""Which run a training continues: ``trainer.resume=<RUN_ID>|auto`` and relaunched sweeps.

A run's identity is its config minus the settings that do not change what is trained
(tracking, paths, cache, verbosity, resume and checkpoint settings): its hash is the
``config_hash`` tag. ``auto`` and a relaunched sweep (``sweep.skip_finished``) look for the
newest run with the same hash under the same sweep parent: FINISHED is skipped (sweeps) or
trained anew (single runs), KILLED, FAILED or stale RUNNING is continued.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from deepfake_detect.config.validation import ConfigError
from deepfake_detect.tracking.run_state import heartbeat_age, process_gone
from deepfake_detect.tracking.vocabulary import (
    CONFIG_HASH_TAG,
    FINGERPRINT_TAG,
    HOST_TAG,
    PARENT_TAG,
    PID_TAG,
    RESUMABLE_TAG,
    RUN_TYPE_TAG,
    TRAINING,
)

log = logging.getLogger(__name__)

# config keys that may differ between the attempts of one run (prefixes end with ".")
VOLATILE_KEYS: tuple[str, ...] = (
    "trainer.resume",
    "trainer.resume_allow_changes",
    "trainer.checkpoint.",
    "trainer.heartbeat_seconds",
    "trainer.verbose",
    "verbose",
    "trainer.parallel_calls",
    "tracking.",
    "paths.",
    "registry.",
    "data.root",  # the same files elsewhere (another machine): the data fingerprint is compared
    "data.cache",
    "data.cache_dir",
    "data.cache_max_gb",
    "sweep.skip_finished",
    "runtime.",  # logged by the trainer (hardware choices), not part of the config
)
AUTO = "auto"


class ResumeError(ConfigError):
    """The run to continue cannot be continued with this config (the message says why)."""


def is_volatile(key: str) -> bool:
    """True for a config key that may differ between attempts of one run."""
    return any(key == v or (v.endswith(".") and key.startswith(v)) for v in VOLATILE_KEYS)


def identity_params(params: Mapping[str, str]) -> dict[str, str]:
    """``params`` without the volatile keys."""
    return {key: value for key, value in params.items() if not is_volatile(key)}


def config_hash(params: Mapping[str, str]) -> str:
    """16 hex digits identifying what a config trains."""
    text = json.dumps(identity_params(params), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_changes(logged: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """``key -> "old -> new"`` for every identity key that differs."""
    old, now = identity_params(logged), identity_params(new)
    return {
        key: f"{old.get(key, '(absent)')} -> {now.get(key, '(absent)')}"
        for key in sorted(set(old) | set(now))
        if old.get(key) != now.get(key)
    }


@dataclass(frozen=True)
class RunPlan:
    """What a training does: a ``new`` run, ``resume`` ``run`` or ``skip`` (already done)."""

    action: str
    run: Run | None = None
    changes: dict[str, str] | None = None


def _same_data(run: Run, fingerprint: str | None) -> bool:
    """The run trained on these files (runs that failed before reading data always match)."""
    logged = run.data.tags.get(FINGERPRINT_TAG)
    return fingerprint is None or logged is None or logged == fingerprint


def _job_run(client: MlflowClient, experiment_id: str, digest: str, parent: str | None):
    """The newest training run with this config hash under this parent (None: no parent)."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.{CONFIG_HASH_TAG} = '{digest}' and tags.{RUN_TYPE_TAG} = '{TRAINING}'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    return next((run for run in runs if run.data.tags.get(PARENT_TAG) == parent), None)


def _check_continuable(run: Run, experiment_id: str, stale_after: float) -> None:
    run_id = run.info.run_id
    if run.info.experiment_id != experiment_id:
        raise ResumeError(
            f"trainer.resume={run_id}: the run is in experiment id {run.info.experiment_id}, "
            f"not this one ({experiment_id}); set tracking.experiment to its experiment"
        )
    if run.data.tags.get(RUN_TYPE_TAG) != TRAINING:
        raise ResumeError(f"trainer.resume={run_id}: not a training run")
    if run.info.status == "FINISHED":
        raise ResumeError(
            f"trainer.resume={run_id}: the run already FINISHED; drop trainer.resume to train "
            "a new run"
        )
    age = heartbeat_age(run)
    if run.info.status == "RUNNING" and age <= stale_after and not process_gone(run):
        host = run.data.tags.get(HOST_TAG, "an unknown host").split("/")[0]
        raise ResumeError(
            f"trainer.resume={run_id}: the run is still RUNNING (heartbeat {age:.0f} s ago, "
            f"pid {run.data.tags.get(PID_TAG, '?').split(':')[0]} on {host}); stop it first; "
            "if its process is gone (another machine): deepfake-detect runs reap --run "
            f"{run_id} --stale-after {max(1, math.floor(age))}s"
        )


def plan_run(
    client: MlflowClient,
    experiment_id: str,
    params: Mapping[str, str],
    fingerprint: str | None,
    request: str | None,
    parent: str | None,
    skip_finished: bool,
    allow_changes: bool,
    stale_after: float,
) -> RunPlan:
    """Decide between a new run, continuing one (``request``: a run id or ``auto``; a sweep
    job with ``skip_finished`` behaves as ``auto``) and skipping a FINISHED sweep job.

    Raises ResumeError for a run that cannot be continued or whose config differs (unless
    ``allow_changes``: the changes come back in the plan).
    """
    from mlflow.exceptions import MlflowException

    auto = request == AUTO or (request is None and parent is not None and skip_finished)
    if request and request != AUTO:
        try:
            run = client.get_run(str(request))
        except MlflowException:
            raise ResumeError(
                f"trainer.resume={request}: no such run in this store; copy a run id from "
                "`deepfake-detect runs list` or use trainer.resume=auto"
            ) from None
    elif auto:
        run = _job_run(client, experiment_id, config_hash(params), parent)
        if run is None:
            log.info("no unfinished run of this config to continue: starting a new run")
            return RunPlan("new")
        if not _same_data(run, fingerprint):
            log.info("the newest run of this config trained on other data: starting a new run")
            return RunPlan("new")
        if run.info.status == "FINISHED":
            return RunPlan("skip", run) if parent is not None and skip_finished else RunPlan("new")
        if run.data.tags.get(RESUMABLE_TAG) == "false" and run.info.status != "RUNNING":
            log.warning(
                "run %s of this config cannot continue (no checkpoint): starting a new run",
                run.info.run_id,
            )
            return RunPlan("new")
    else:
        return RunPlan("new")
    _check_continuable(run, experiment_id, stale_after)
    changes = config_changes(run.data.params, params)
    if not _same_data(run, fingerprint):  # data.root may move, the files may not change
        changes["dataset_fingerprint"] = f"{run.data.tags[FINGERPRINT_TAG]} -> {fingerprint}"
    if changes and not allow_changes:
        listed = "; ".join(f"{key}: {change}" for key, change in changes.items())
        raise ResumeError(
            f"cannot resume run {run.info.run_id}: its config or data differs ({listed}); pass "
            f"the run's overrides ({run.data.tags.get('hydra_overrides') or 'none'}) and data, "
            "or add trainer.resume_allow_changes=true"
        )
    return RunPlan("resume", run, changes)
