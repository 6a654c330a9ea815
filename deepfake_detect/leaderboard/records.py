"""What the leaderboard reads from a store, and the lookups both store readers share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deepfake_detect.tracking.vocabulary import MONITOR_PARAM

History = dict[str, dict[int, float]]  # key -> step -> value
SWEPT_PARAMS: tuple[str, ...] = ("model.dropout", "optimizer.lr")  # columns of every table
ALWAYS_READ_PARAMS: tuple[str, ...] = (*SWEPT_PARAMS, MONITOR_PARAM)  # the table needs these


class StoreError(LookupError):
    """The store, an experiment or a sweep the user named does not exist."""


@dataclass
class RunRecord:
    """One run with everything the leaderboard needs."""

    run_id: str
    name: str
    status: str
    experiment: str
    parent_run_id: str
    params: dict[str, str]
    history: History = field(default_factory=dict)
    pruned: bool = False  # stopped early by sweep pruning (tag ``pruned=true``)
    # set by a reader that picked the row's epoch in the store: ``values`` holds that epoch's
    # values (``epoch`` None: the run logged no epoch) and ``history`` stays empty
    preselected: bool = False
    epoch: int | None = None
    values: dict[str, float] = field(default_factory=dict)


def choose_experiments(existing: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    """Experiment id -> name for ``names`` (all of ``existing`` name -> id when empty)."""
    if not names:
        return {eid: name for name, eid in existing.items()}
    missing = [name for name in names if name not in existing]
    if missing:
        raise StoreError(
            f"unknown experiment {', '.join(map(repr, missing))}; existing: "
            f"{', '.join(sorted(existing)) or '(none)'}"
        )
    return {existing[name]: name for name in names}


def check_sweep(sweep: str | None, parents: Sequence[str]) -> None:
    """Raise StoreError listing the sweep runs when ``sweep`` is not one of them."""
    if sweep and sweep not in parents:
        raise StoreError(
            f"unknown sweep {sweep!r}; sweep runs here: {', '.join(parents) or '(none)'}"
        )
