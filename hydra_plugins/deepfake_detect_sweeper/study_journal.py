"""An Optuna study that survives a relaunch: every told trial goes into a JSON-lines journal
stored as an artifact of the sweep's MLflow parent run (``optuna_study.jsonl``), so it lives
in the tracking store (SQLite, PostgreSQL or a server) beside the runs themselves.

Optuna 2.10 (what hydra-optuna-sweeper 1.3 allows) cannot use its RDB storage with SQLAlchemy 2,
and its journal storage came with Optuna 3.1; replaying told trials with ``Study.add_trial`` is
what both versions support. A relaunched sweep continues its parent run (``sweep.skip_finished``)
and with it the study: the sampler sees every earlier trial and only the trials still missing
from ``n_trials`` are run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_ARTIFACT = "optuna_study.jsonl"


class StudyJournal:
    """The told trials of one sweep's study, kept on its parent run."""

    def __init__(self, tracking_uri: str, parent_run_id: str) -> None:
        from deepfake_detect.tracking.store import store_client

        self.client = store_client(tracking_uri)
        self.parent_run_id = parent_run_id
        self.records: list[dict] = []

    @classmethod
    def for_current_sweep(cls, tracking_uri: str | None) -> StudyJournal | None:
        """The journal of the sweep whose parent run the sweep callback opened (None outside
        one, e.g. when the callback is removed from the config)."""
        from deepfake_detect.config.run_naming import PARENT_RUN_ENV
        from deepfake_detect.tracking.store import resolve_tracking_uri

        parent = os.environ.get(PARENT_RUN_ENV)
        return cls(resolve_tracking_uri(tracking_uri), parent) if parent else None

    def load(self) -> list[dict]:
        """The trials told in earlier launches of this sweep (none for a new sweep)."""
        import mlflow.artifacts

        stored = {a.path for a in self.client.list_artifacts(self.parent_run_id)}
        if JOURNAL_ARTIFACT not in stored:  # a new sweep (a read error must not restart it)
            return []
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=self.parent_run_id,
                artifact_path=JOURNAL_ARTIFACT,
                dst_path=tmp,
                tracking_uri=self.client.tracking_uri,
            )
            lines = Path(path).read_text().splitlines()
        self.records = [json.loads(line) for line in lines if line.strip()]
        return self.records

    def unfinished_trials(self, names: list[str]) -> list[dict[str, float]]:
        """The swept values of this sweep's children that were stopped or crashed and never
        told to the study: enqueued first, so their jobs resume their own runs."""
        from deepfake_detect.tracking.vocabulary import PARENT_TAG, RESUMABLE_TAG

        parent = self.client.get_run(self.parent_run_id)
        children = self.client.search_runs(
            [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{self.parent_run_id}'"
        )
        told = [record["params"] for record in self.records]
        pending = []
        for child in children:
            if child.info.status not in ("KILLED", "FAILED", "RUNNING"):
                continue
            if child.data.tags.get(RESUMABLE_TAG) == "false":
                continue
            try:
                values = {name: float(child.data.params[name]) for name in names}
            except (KeyError, ValueError):
                continue
            if values not in told and values not in pending:
                pending.append(values)
        return pending

    def replay(self, study) -> int:  # study: optuna.Study
        """Add the loaded trials to ``study``; return how many."""
        import optuna
        from optuna.distributions import json_to_distribution

        for record in self.records:
            study.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState[record["state"]],
                    value=record["value"],
                    params=record["params"],
                    distributions={
                        k: json_to_distribution(v) for k, v in record["distributions"].items()
                    },
                    intermediate_values={int(k): v for k, v in record["intermediate"].items()},
                )
            )
        if self.records and hasattr(study.sampler, "reseed_rng"):
            # a seeded sampler starts its random stream anew in every process: unchanged it
            # would propose the first launch's points again (sweep jobs would skip them)
            study.sampler.reseed_rng()
        return len(self.records)

    def append(self, trial) -> None:  # trial: optuna.trial.FrozenTrial, finished
        """Record a told trial and store the journal on the parent run."""
        from optuna.distributions import distribution_to_json

        self.records.append(
            {
                "state": trial.state.name,
                "value": trial.value,
                "params": trial.params,
                "distributions": {
                    k: distribution_to_json(v) for k, v in trial.distributions.items()
                },
                "intermediate": {str(k): v for k, v in trial.intermediate_values.items()},
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / JOURNAL_ARTIFACT
            path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            try:
                self.client.log_artifact(self.parent_run_id, str(path))
            except Exception as error:  # the sweep goes on; only a relaunch would miss it
                log.warning("optuna study journal not stored: %s", error)
