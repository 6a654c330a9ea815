"""Re-run a finished training run from its own record and compare the numbers.

The run's exact command-line overrides (tag ``hydra_overrides_json``) are replayed through
the real training entry point in a subprocess, into a new run tagged ``reproduces=<id>``
(never registered, never resumed into the original), after the data's fingerprint is
checked; differences in git commit or package versions are warnings, metric differences
beyond the tolerance make the verdict. No TensorFlow in this process.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from deepfake_detect.leaderboard.records import RunRecord
from deepfake_detect.leaderboard.table import select_step
from deepfake_detect.tracking.run_inputs import environment_tags
from deepfake_detect.tracking.store import git_commit
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    EPOCH_KEYS,
    FINGERPRINT_TAG,
    GIT_COMMIT_TAG,
    MONITOR_PARAM,
    OVERRIDES_JSON_TAG,
    REPRODUCES_TAG,
    RUN_TYPE_TAG,
    TEST_KEYS,
    TRAINING,
    VERSION_TAG_PREFIX,
)
from deepfake_detect.training.hardware import INTRA_OP_THREADS_ENV, usable_cpus

# overrides the reproduction sets itself: where it logs, that it is a new unregistered run
REPLACED_KEYS = ("tracking.uri", "trainer.resume", "registry.register", "tracking.tags")
COMPARED_KEYS: tuple[str, ...] = (*EPOCH_KEYS, *TEST_KEYS)
RUNTIME_PREFIX = "runtime."  # the trainer's hardware choices, logged as params
THREADS_PARAM = "runtime.intra_op_threads"  # TensorFlow's intra-op pool: it changes the sums


class ReproduceError(ValueError):
    """The run cannot be reproduced as asked (one line, says what to do)."""


@dataclass(frozen=True)
class Difference:
    """One metric of the original run and of its reproduction (at their best epochs)."""

    key: str
    original: float | None
    reproduced: float | None

    @property
    def delta(self) -> float:
        if self.original is None or self.reproduced is None:
            return math.nan
        if math.isnan(self.original) and math.isnan(self.reproduced):
            return 0.0
        return self.reproduced - self.original

    def within(self, tolerance: float) -> bool:
        return abs(self.delta) <= tolerance  # NaN (missing on one side) is never within


def training_run(client: MlflowClient, run_id: str) -> Run:
    """The FINISHED training run ``run_id`` (ReproduceError otherwise)."""
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise ReproduceError(f"no run {run_id} in {client.tracking_uri}") from error
    if run.data.tags.get(RUN_TYPE_TAG) != TRAINING:
        kind = run.data.tags.get(RUN_TYPE_TAG, "untyped")
        raise ReproduceError(f"run {run_id} is a {kind} run; reproduce re-runs training runs")
    if run.info.status != "FINISHED":
        raise ReproduceError(
            f"run {run_id} is {run.info.status}; only FINISHED runs have numbers to reproduce "
            "(continue it with trainer.resume instead)"
        )
    return run


def logged_overrides(run: Run) -> list[str]:
    """The run's command-line overrides, exactly as given."""
    tags = run.data.tags
    if OVERRIDES_JSON_TAG in tags:
        overrides = json.loads(tags[OVERRIDES_JSON_TAG])
    elif "hydra_overrides" in tags:  # runs logged before the exact list was kept
        overrides = shlex.split(tags["hydra_overrides"])
    else:
        raise ReproduceError(f"run {run.info.run_id} logged no overrides; it cannot be replayed")
    hidden = [o for o in overrides if "***" in o and not override_key(o).startswith(REPLACED_KEYS)]
    if hidden:
        raise ReproduceError(
            f"run {run.info.run_id}'s override {hidden[0]!r} held a secret that was redacted; "
            "pass credentials through MLFLOW_TRACKING_* variables and train anew"
        )
    return [str(o) for o in overrides]


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def reproduction_overrides(overrides: list[str], run_id: str, tracking_uri: str) -> list[str]:
    """The original overrides with the reproduction's own settings in place of theirs."""
    kept = [o for o in overrides if not override_key(o).startswith(REPLACED_KEYS)]
    return [
        *kept,
        f"tracking.uri={tracking_uri}",
        "trainer.resume=null",
        "registry.register=false",
        f"++tracking.tags.{REPRODUCES_TAG}={run_id}",
    ]


def check_same_data(overrides: list[str], run: Run) -> None:
    """Compose the run's config and fingerprint its data now: refuse other data."""
    from hydra import compose, initialize_config_dir

    from deepfake_detect.config.paths import CONFIG_DIR
    from deepfake_detect.config.resolvers import register_resolvers
    from deepfake_detect.data.prepare import scan_data

    register_resolvers()

    task = [o for o in overrides if not override_key(o).startswith("hydra")]  # Hydra's own
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=task)
    now = scan_data(cfg.data).fingerprint
    logged = run.data.tags.get(FINGERPRINT_TAG, "")
    if now != logged:
        raise ReproduceError(
            f"the data at {cfg.data.root} has fingerprint {now}, but run {run.info.run_id} "
            f"trained on {logged or '(none logged)'}: its files changed, moved or are another "
            "dataset; restore them (or pass data.root of a copy) to reproduce"
        )


def environment_warnings(run: Run) -> list[str]:
    """What differs from the run's git commit and package versions (numbers may differ)."""
    tags = run.data.tags
    warnings = []
    now_commit = git_commit()
    then_commit = tags.get(GIT_COMMIT_TAG, "unknown")
    if then_commit != now_commit:
        warnings.append(f"git commit {then_commit} then, {now_commit} now")
    for key, value in environment_tags().items():
        then = tags.get(key)
        if then is not None and then != value:
            warnings.append(f"{key.removeprefix(VERSION_TAG_PREFIX)} {then} then, {value} now")
        elif then is None:
            warnings.append(f"{key.removeprefix(VERSION_TAG_PREFIX)} not recorded then")
    if THREADS_PARAM not in run.data.params:
        warnings.append(
            "its intra-op thread count was not recorded (it changes the sums): this run uses "
            "the CPUs of this machine"
        )
    return warnings


def pinned_threads(run: Run) -> int | None:
    """The intra-op thread count the run trained with (None: not recorded)."""
    value = run.data.params.get(THREADS_PARAM, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def threads_note(run: Run) -> str | None:
    """Says that the reproduction uses the original's thread count, and that it is slower
    where this machine has fewer CPUs (None when nothing to say)."""
    threads = pinned_threads(run)
    if threads is None:
        return None
    cpus = usable_cpus()
    if threads <= cpus:
        return None
    return (
        f"run {run.info.run_id} trained with {threads} intra-op threads, this machine has "
        f"{cpus} CPUs: the reproduction uses {threads} threads too (same sums, slower)"
    )


def runtime_differences(original: Run, reproduced: Run) -> list[str]:
    """``runtime.*`` params the two runs resolved differently (precision, XLA, threads...):
    where one differs, the numbers may too."""
    before, after = original.data.params, reproduced.data.params
    keys = sorted(k for k in {*before, *after} if k.startswith(RUNTIME_PREFIX))
    return [
        f"{key} {before.get(key, '(not recorded)')} then, {after.get(key, '(none)')} now"
        for key in keys
        if before.get(key) != after.get(key)
    ]


def best_epoch_values(client: MlflowClient, run: Run) -> dict[str, float]:
    """The run's compared metrics at its best epoch (the leaderboard's rule)."""
    run_id = run.info.run_id
    keys = {*COMPARED_KEYS, BEST_EPOCH_METRIC}
    history = {
        key: {m.step: m.value for m in client.get_metric_history(run_id, key)}
        for key in keys
        if key in run.data.metrics
    }
    monitor = run.data.params.get(MONITOR_PARAM, "val_auc")
    step = select_step(RunRecord(run_id, run_id, "FINISHED", "", "", {}, history), monitor, "best")
    return {key: values[step] for key, values in history.items() if step in values}


def compare_runs(client: MlflowClient, original: Run, reproduced: Run) -> list[Difference]:
    """Every compared metric either run logged, side by side."""
    before, after = best_epoch_values(client, original), best_epoch_values(client, reproduced)
    keys = [key for key in COMPARED_KEYS if key in before or key in after]
    return [Difference(key, before.get(key), after.get(key)) for key in keys]


def run_reproduction(client: MlflowClient, run: Run, overrides: list[str]) -> Run:
    """Train with ``overrides`` in a subprocess (its output is the user's), on as many
    intra-op threads as the original, and return the new run."""
    command = [sys.executable, "-m", "deepfake_detect.train", *overrides]
    env = dict(os.environ)
    threads = pinned_threads(run)
    if threads is not None:
        env[INTRA_OP_THREADS_ENV] = str(threads)
    finished = subprocess.run(command, check=False, env=env)
    if finished.returncode != 0:
        raise ReproduceError(
            f"the reproduction's training exited with {finished.returncode} (its output is "
            "above); nothing was compared"
        )
    runs = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.{REPRODUCES_TAG} = '{run.info.run_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise ReproduceError("the reproduction finished but its run was not found in the store")
    return runs[0]
