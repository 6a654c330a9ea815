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
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from deepfake_detect.config.run_naming import PARENT_RUN_ENV
from deepfake_detect.config.validation import ConfigError, check_training_config
from deepfake_detect.tracking.vocabulary import (
    ERROR_TAG,
    PARAM_VALUE_LIMIT,
    RUN_TYPE_TAG,
    SWEEP,
    TAG_VALUE_LIMIT,
)

log = logging.getLogger(__name__)


def sweep_name(config: DictConfig) -> str:
    """``sweep-grid_dropout_lr-2026-11-29_13-05-00`` (search config name or ``adhoc``)."""
    choice = config.hydra.runtime.choices.get("hparams_search") or "adhoc"
    return f"sweep-{choice}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"


def grid_params(config: DictConfig) -> dict[str, str]:
    """The swept values: sweeper params plus comma-separated command-line overrides."""
    params = {}
    sweeper_params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    for key, value in sweeper_params.items():
        params[f"sweep.{key}"] = str(value)
    for override in config.hydra.overrides.task:
        key, _, value = override.partition("=")
        if "," in value or value.startswith(("range(", "interval(", "choice(")):
            params[f"sweep.{key}"] = value
    return params


STOCK_OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
PRUNING_OPTUNA_SWEEPER = (
    "hydra_plugins.deepfake_detect_sweeper.pruning_optuna_sweeper.PruningOptunaSweeper"
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


class MlflowSweepCallback(Callback):
    """Opens the sweep's parent run before jobs start and summarises it when they end."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.uri: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from deepfake_detect.tracking.store import (
            ensure_experiment,
            resolve_tracking_uri,
            store_client,
        )

        try:  # a bad value given to every job: one line, before any run exists
            check_training_config(config)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        warn_if_optuna_cannot_learn_pruning(config)
        self.uri = resolve_tracking_uri(config.tracking.uri)
        experiment_id = ensure_experiment(self.uri, str(config.tracking.experiment))
        client = store_client(self.uri)
        tags = {
            RUN_TYPE_TAG: SWEEP,
            "hydra_overrides": " ".join(config.hydra.overrides.task),
            "sweeper": str(config.hydra.sweeper._target_),
            "launcher": str(config.hydra.launcher._target_),
            "sweep_dir": str(config.hydra.sweep.dir),
        }
        run = client.create_run(experiment_id, run_name=sweep_name(config), tags=tags)
        self.parent_run_id = run.info.run_id
        atexit.register(self._close_if_open)
        # SIGTERM between jobs (or in the summary) exits 143 and atexit marks the parent KILLED;
        # inside a job's run the run's own handler takes over for that run
        self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        params = grid_params(config)
        if params:
            from mlflow.entities import Param

            client.log_batch(
                self.parent_run_id,
                params=[Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in params.items()],
            )
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        print(f"sweep parent run {self.parent_run_id} ({run.info.run_name}) at {self.uri}")

    def _close_if_open(self) -> None:
        """A sweep that died (Ctrl-C, crash) leaves its parent KILLED, not RUNNING."""
        if not self.parent_run_id:
            return
        from deepfake_detect.tracking.store import store_client

        client = store_client(self.uri)
        if client.get_run(self.parent_run_id).info.status == "RUNNING":
            client.set_terminated(self.parent_run_id, "KILLED")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from deepfake_detect.tracking.store import store_client

        if not self.parent_run_id:
            return
        client = store_client(self.uri)
        status = "FAILED"
        try:
            from deepfake_detect.leaderboard.sweep_summary import summarise_sweep

            summarise_sweep(
                client,
                self.parent_run_id,
                str(config.tracking.experiment),
                str(OmegaConf.select(config, "trainer.monitor", default="val_auc")),
            )
            status = "FINISHED"
        except Exception as error:  # Hydra only warns about callback errors: record it
            client.set_tag(
                self.parent_run_id, ERROR_TAG, f"summary failed: {error!r}"[:TAG_VALUE_LIMIT]
            )
            raise
        finally:
            client.set_terminated(self.parent_run_id, status)
            os.environ.pop(PARENT_RUN_ENV, None)
            self.parent_run_id = None
            if getattr(self, "_previous_sigterm", None) is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
