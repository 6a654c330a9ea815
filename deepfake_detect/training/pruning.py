"""Sweep trial pruning for any launcher (basic, joblib, SLURM, Optuna).

A trial reads its finished siblings (FINISHED runs under the same sweep parent) from the
tracking store, not from an in-process study, so jobs in other processes or on other hosts
see each other. ``median``: after ``sweep.pruning_warmup`` epochs, a trial whose best monitored
value so far is worse than the median of its finished siblings' values at the same epoch
stops; it keeps its best epoch's weights, is evaluated and logged like any run, ends
FINISHED and is tagged ``pruned=true`` with ``pruned_at_epoch``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deepfake_detect.tracking.vocabulary import PARENT_TAG, RUN_TYPE_TAG, TRAINING

if TYPE_CHECKING:  # kept light: Hydra's sweeper plugin imports this module at start-up
    from mlflow.tracking import MlflowClient


def is_worse_than_median(best: float, siblings: Sequence[float], higher: bool) -> bool:
    """True when ``best`` (the trial's best so far) is worse than the median of the siblings'
    finite values; never with no sibling value to compare with. A NaN best is worse."""
    values = [value for value in siblings if math.isfinite(value)]
    if not values:
        return False
    if math.isnan(best):
        return True
    median = statistics.median(values)
    return best < median if higher else best > median


LOOK_BACK_MS = 10 * 60 * 1000  # siblings that ended this long before the newest seen are re-read


class SiblingHistories:
    """The monitored metric of a sweep's finished trials, from the tracking store.

    Each refresh is one paged ``search_runs`` for siblings that finished since shortly before
    the newest one seen (``end_time``), and one history read per newly finished sibling (a
    finished run's history does not change): the cost does not grow with the siblings read.
    """

    def __init__(
        self, client: MlflowClient, experiment_id: str, parent_run_id: str, run_id: str, key: str
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.key = key
        self.filter = (
            f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.{RUN_TYPE_TAG} = '{TRAINING}' "
            "and attributes.status = 'FINISHED'"
        )
        self.histories: dict[str, dict[int, float]] = {}
        self.newest_end = 0  # end_time (ms) of the newest finished sibling read

    def refresh(self) -> None:
        """Read the histories of siblings that finished since the last complete refresh (with
        a look-back: end times come from each job's clock, and commits arrive out of order)."""
        since = max(0, self.newest_end - LOOK_BACK_MS)
        query = f"{self.filter} and attributes.end_time >= {since}"
        newest, token = self.newest_end, None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], query, max_results=1000, page_token=token
            )
            for run in page:
                run_id = run.info.run_id
                if run_id != self.run_id and run_id not in self.histories:
                    history = self.client.get_metric_history(run_id, self.key)
                    self.histories[run_id] = {m.step: m.value for m in history}
                newest = max(newest, run.info.end_time or 0)
            token = page.token
            if not token:
                break
        self.newest_end = newest  # only after every page was read

    def values_at(self, epoch: int) -> list[float]:
        """Each finished sibling's value at ``epoch`` (siblings that stopped before it: none)."""
        return [h[epoch] for h in self.histories.values() if epoch in h]


class PrunedObjective(float):
    """A pruned trial's objective (its best monitored value), as the job returns it: still a
    float for every sweeper, plus the epoch it stopped at and its per-epoch monitored values
    (the Optuna sweeper reports them and tells the study the trial was PRUNED)."""

    epoch: int
    history: list[float]

    def __new__(cls, value: float, epoch: int, history: Sequence[float]) -> PrunedObjective:
        objective = super().__new__(cls, value)
        objective.epoch = epoch
        objective.history = list(history)
        return objective

    def __reduce__(self) -> tuple:
        """Pickle as ``PrunedObjective(value, epoch, history)`` (joblib/submitit workers)."""
        return (PrunedObjective, (float(self), self.epoch, self.history))
