"""Hydra callback: one MLflow parent run per multirun, each job's run nested under it.

Before any job starts, the store and experiment are created (parallel first-time SQLite
schema creation races) and the parent run is opened; its id reaches the jobs through an
environment variable (inherited by joblib/submitit workers). When the sweep ends the parent
gets its summary from :mod:`deepfake_detect.leaderboard.sweep_summary`.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from deepfake_detect.config.run_naming import PARENT_RUN_ENV
from deepfake_detect.config.validation import ConfigError, check_training_config
from deepfake_detect.tracking.store import credentials_refused, error_line, redact
from deepfake_detect.tracking.vocabulary import (
    ERROR_TAG,
    PARAM_VALUE_LIMIT,
    RESUMABLE_TAG,
    RUN_TYPE_TAG,
    SWEEP,
    SWEEP_HASH_TAG,
    TAG_VALUE_LIMIT,
)
from deepfake_detect.training.hydra_redaction import redact_log_records, redact_multirun_file

log = logging.getLogger(__name__)


def sweep_name(config: DictConfig) -> str:
    """``sweep-grid_dropout_lr-2026-11-29_13-05-00`` (search config name or ``adhoc``)."""
    choice = config.hydra.runtime.choices.get("hparams_search") or "adhoc"
    return f"sweep-{choice}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"


def grid_params(config: DictConfig) -> dict[str, str]:
    """The swept values: sweeper params plus the command line's sweep overrides, as Hydra's
    own override parser reads them (``data.classes=[Real,Fake]`` is a list, not a sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = {}
    sweeper_params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    for key, value in sweeper_params.items():
        params[f"sweep.{key}"] = str(value)
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    for override in overrides:
        if override.is_sweep_override():
            params[f"sweep.{override.get_key_element()}"] = override.input_line.partition("=")[2]
    return params


def sweep_identity(config: DictConfig) -> str:
    """16 hex digits naming "the same sweep": experiment, search space, sweeper and every
    command-line override (a relaunch with the same command has the same identity)."""
    import hashlib
    import json

    from deepfake_detect.tracking.resume import is_volatile

    overrides = [o for o in config.hydra.overrides.task if not is_volatile(override_key(o))]
    identity = {
        "data": data_fingerprint(config),
        "experiment": str(config.tracking.experiment),
        "overrides": sorted(overrides),
        "params": grid_params(config),
        "sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_")),
        "search": str(config.hydra.runtime.choices.get("hparams_search")),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def data_fingerprint(config: DictConfig) -> str:
    """The data's fingerprint (other data: another sweep); jobs report a data error."""
    from deepfake_detect.data.layout import DataError
    from deepfake_detect.data.prepare import scan_data

    try:
        return scan_data(config.data).fingerprint
    except DataError:
        return "unreadable"


def override_key(override: str) -> str:
    """``model.dropout`` of ``model.dropout=0.1,0.3`` (``+``/``++``/``~`` prefixes dropped)."""
    return override.lstrip("+~").partition("=")[0]


def previous_parent(client, experiment_id: str, identity: str, stale_after: float):
    """The newest parent run of the same sweep, to continue (None: there is none); raises
    ConfigError while that sweep still runs elsewhere."""
    from deepfake_detect.tracking.run_state import heartbeat_age, process_gone

    runs = client.search_runs(
        [experiment_id],
        f"tags.{SWEEP_HASH_TAG} = '{identity}' and tags.{RUN_TYPE_TAG} = '{SWEEP}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    parent = runs[0]
    running = parent.info.status == "RUNNING" and not process_gone(parent)
    if running and heartbeat_age(parent) <= stale_after:
        raise ConfigError(
            f"the same sweep is still running (parent run {parent.info.run_id}); wait for it, "
            "or add sweep.skip_finished=false to start a separate sweep; if its process is "
            f"gone (another machine): deepfake-detect runs reap --run {parent.info.run_id} "
            "--stale-after 0s"
        )
    return parent


STOCK_OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
PRUNING_OPTUNA_SWEEPER = (
    "hydra_plugins.deepfake_detect_sweeper.pruning_optuna_sweeper.PruningOptunaSweeper"
)


def refuse_credentials_in_job_files(config: DictConfig, uri: str) -> None:
    """A password in ``tracking.uri`` of a sweep on SLURM would sit in submitit's job files
    (pickled, unredacted, beside the sweep's logs): ask for the variables instead."""
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    if "submitit" in launcher and redact(uri) != uri:
        raise ConfigError(
            f"tracking.uri {redact(uri)} holds a password, which submitit would write to its job "
            "files: give it as MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            "MLFLOW_TRACKING_TOKEN) instead, e.g. `source .cluster/env`"
        )


def warn_if_optuna_cannot_learn_pruning(config: DictConfig) -> None:
    """Hydra's own Optuna sweeper would take a pruned trial's truncated value as COMPLETE."""
    sweeper = OmegaConf.select(config, "hydra.sweeper._target_")
    if OmegaConf.select(config, "sweep.pruning") and sweeper == STOCK_OPTUNA_SWEEPER:
        print(
            "warning: sweep.pruning with Hydra's stock Optuna sweeper tells the study a pruned "
            "trial's value as COMPLETE; add "
            f"hydra.sweeper._target_={PRUNING_OPTUNA_SWEEPER} (as hparams_search="
            "optuna_dropout_lr does) so it is told PRUNED",
            file=sys.stderr,
        )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


LAUNCH_TAG = "launches"  # how many times a sweep parent was launched (1 + relaunches)
# the parent's heartbeat, kept out of the callback: joblib pickles the callback for its workers
_parent_heartbeat: list = []


class MlflowSweepCallback(Callback):
    """Opens the sweep's parent run before jobs start and summarises it when they end."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.uri: str | None = None
        self.launch = 0  # 0 for the first launch of a sweep, n for its n-th relaunch

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        redact_log_records()  # the launcher logs each job's overrides
        try:
            self._open_parent(config)
        except Exception as error:  # Hydra would only warn and run the jobs without a parent
            if not credentials_refused(error):
                log.exception("the sweep's parent run could not be opened")
            print(
                f"error: the sweep's parent run could not be opened: {error_line(error)}",
                file=sys.stderr,
            )
            sys.exit(2 if credentials_refused(error) else 1)

    def _open_parent(self, config: DictConfig) -> None:
        """Check the config and store, open (or continue) the parent run, export its id."""
        from mlflow.entities import Param, RunTag

        from deepfake_detect.tracking.health import StoreUnavailableError, check_store_reachable
        from deepfake_detect.tracking.run_state import Heartbeat, process_tags
        from deepfake_detect.tracking.store import (
            ensure_experiment,
            resolve_tracking_uri,
            store_client,
            suppress_mlflow_run_urls,
        )

        suppress_mlflow_run_urls()
        self.uri = resolve_tracking_uri(config.tracking.uri)
        try:  # a bad value given to every job, a dead store: one line, before any run exists
            check_training_config(config)
            refuse_credentials_in_job_files(config, self.uri)
            check_store_reachable(self.uri, float(config.tracking.connect_timeout))
            experiment_id = ensure_experiment(self.uri, str(config.tracking.experiment))
            client = store_client(self.uri)
            identity = sweep_identity(config)
            heartbeat = float(config.trainer.heartbeat_seconds)
            parent = None
            if OmegaConf.select(config, "sweep.skip_finished", default=True):
                parent = previous_parent(client, experiment_id, identity, 3 * heartbeat)
        except (ConfigError, StoreUnavailableError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2 if isinstance(error, ConfigError) else 1)
        warn_if_optuna_cannot_learn_pruning(config)
        tags = {
            **process_tags(),
            RUN_TYPE_TAG: SWEEP,
            SWEEP_HASH_TAG: identity,
            "hydra_overrides": redact(" ".join(config.hydra.overrides.task)),
            "sweeper": str(config.hydra.sweeper._target_),
            "launcher": str(config.hydra.launcher._target_),
            "sweep_dir": str(config.hydra.sweep.dir),
        }
        if parent is None:
            tags[LAUNCH_TAG] = "1"
            run = client.create_run(experiment_id, run_name=sweep_name(config), tags=tags)
        else:  # the same command again: finished jobs are skipped, the rest join this parent
            from deepfake_detect.tracking.lifecycle import clear_outcome_tags

            run = parent
            self.launch = int(run.data.tags.get(LAUNCH_TAG, "1"))
            tags[LAUNCH_TAG] = str(self.launch + 1)
            clear_outcome_tags(client, run)
            client.update_run(run.info.run_id, status="RUNNING")
            client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            print(
                f"relaunched sweep: continuing parent run {run.info.run_id} "
                "(finished jobs are skipped; sweep.skip_finished=false starts a new sweep)"
            )
        self.parent_run_id = run.info.run_id
        _parent_heartbeat.append(Heartbeat(client, self.parent_run_id, heartbeat).__enter__())
        atexit.register(self._close_if_open)
        # SIGTERM between jobs (or in the summary) exits 143 and atexit marks the parent KILLED;
        # inside a job's run the run's own handler takes over for that run
        self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        params = grid_params(config)
        if params and parent is None:  # a continued parent has them (params are immutable)
            client.log_batch(
                self.parent_run_id,
                params=[Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in params.items()],
            )
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        where = redact(self.uri)
        print(f"sweep parent run {self.parent_run_id} ({run.info.run_name}) at {where}")

    def _close_if_open(self) -> None:
        """A sweep that died (Ctrl-C, crash) leaves its parent KILLED, not RUNNING."""
        if not self.parent_run_id:
            return
        from deepfake_detect.tracking.store import store_client

        self._stop_heartbeat()
        client = store_client(self.uri)
        if client.get_run(self.parent_run_id).info.status == "RUNNING":
            client.set_tag(self.parent_run_id, RESUMABLE_TAG, "true")
            client.set_terminated(self.parent_run_id, "KILLED")

    @staticmethod
    def _stop_heartbeat() -> None:
        while _parent_heartbeat:
            _parent_heartbeat.pop().__exit__(None, None, None)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from deepfake_detect.tracking.store import store_client

        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
        if sweep_dir:
            redact_multirun_file(Path(str(sweep_dir)))
        if not self.parent_run_id:
            return
        self._stop_heartbeat()
        client = store_client(self.uri)
        status = "FAILED"
        all_failed = False
        try:
            from deepfake_detect.leaderboard.sweep_summary import summarise_sweep

            children, failed = summarise_sweep(
                client,
                self.parent_run_id,
                str(config.tracking.experiment),
                str(OmegaConf.select(config, "trainer.monitor", default="val_auc")),
                step=self.launch,
            )
            all_failed = failed == children
            status = "FAILED" if all_failed else "FINISHED"
            if all_failed:
                client.set_tag(self.parent_run_id, ERROR_TAG, f"all {children} sweep jobs failed")
        except Exception as error:  # Hydra only warns about callback errors: record it
            client.set_tag(
                self.parent_run_id, ERROR_TAG, f"summary failed: {error!r}"[:TAG_VALUE_LIMIT]
            )
            raise
        finally:
            client.set_terminated(self.parent_run_id, status)
            run_id = self.parent_run_id
            os.environ.pop(PARENT_RUN_ENV, None)
            self.parent_run_id = None
            if getattr(self, "_previous_sigterm", None) is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
        if all_failed:
            print(
                f"error: all {children} jobs of the sweep failed (parent run marked FAILED); "
                f"see `deepfake-detect runs list --sweep {run_id}`",
                file=sys.stderr,
            )
            sys.exit(1)
