"""Hydra's Optuna sweeper, plus: trials that ``sweep.pruning`` stopped are told to the study as
PRUNED, with their per-epoch monitored values as intermediate values.

The pruning decision itself is deepfake_detect's (finished siblings' median, read from the
tracking store, see :mod:`deepfake_detect.training.pruning`), so Optuna and grid sweeps prune
by the same rule. A pruned job returns a :class:`PrunedObjective`; this sweeper notes each
launched job's return value in order, and the study's ``tell`` (called by Hydra's sweeper in
the same order) turns a pruned one into ``TrialState.PRUNED``.

Its study also survives a relaunch of the same sweep (:mod:`.study_journal`): the trials told
before are replayed into the new study and only the missing ones are run.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf

from deepfake_detect.training.pruning import PrunedObjective
from hydra_plugins.deepfake_detect_sweeper.study_journal import StudyJournal

log = logging.getLogger(__name__)


class PruningOptunaSweeper(OptunaSweeper):
    """``hydra/sweeper: optuna`` that reports trials pruned by ``sweep.pruning`` as PRUNED."""

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        impl = self.sweeper
        returned: deque[Any] = deque()
        launch = impl.launcher.launch

        def launch_and_note(job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            """Hydra's launch, noting each job's return value in launch order."""
            returns = launch(job_overrides, initial_job_idx)
            for job in returns:
                try:
                    returned.append(job.return_value)
                except Exception:  # a failed job: the sweeper tells FAIL itself
                    returned.append(None)
            return returns

        tell = optuna.study.Study.tell
        create_study = optuna.create_study
        journal = StudyJournal.for_current_sweep(
            OmegaConf.select(impl.config, "tracking.uri") if impl.config else None
        )
        unfinished: list[dict[str, float]] = []
        if journal is not None:
            done = len(journal.load())
            unfinished = journal.unfinished_trials(list(impl.params or {}))
        if journal is not None and (done or unfinished):
            log.info(
                "optuna: continuing the study with its %d told trial(s); %d stopped trial(s) "
                "resume first",
                done,
                len(unfinished),
            )
            impl.n_trials = max(len(unfinished), impl.n_trials - done)

        def create_and_replay(*args: Any, **kwargs: Any) -> optuna.Study:
            """``optuna.create_study``, then the journal's trials added to it and the
            stopped ones queued (same values: their jobs continue their runs)."""
            study = create_study(*args, **kwargs)
            if journal is not None:
                journal.replay(study)
                for values in unfinished:
                    study.enqueue_trial(values)
            return study

        by_trial: dict[int, Any] = {}  # trial number -> its job's return value

        def tell_pruned(
            study: optuna.Study,
            trial: optuna.trial.Trial | int,
            values: Any = None,
            state: TrialState = TrialState.COMPLETE,
        ) -> None:
            """``Study.tell``, telling PRUNED (with intermediate values) for pruned jobs."""
            number = trial.number if hasattr(trial, "number") else int(trial)
            if number not in by_trial:  # the first tell of a trial (a retry tells FAIL again)
                by_trial[number] = returned.popleft() if returned else None
            value = by_trial[number]
            try:
                return _tell(study, trial, number, values, state, value)
            finally:
                frozen = study.get_trials(deepcopy=False)[number]
                if journal is not None and frozen.state.is_finished():
                    journal.append(frozen)

        def _tell(study, trial, number, values, state, value) -> None:
            if isinstance(value, PrunedObjective) and state == TrialState.COMPLETE:
                for step, monitored in enumerate(value.history):
                    if not math.isnan(monitored) and hasattr(trial, "report"):
                        trial.report(monitored, step)
                tell(study, trial, state=TrialState.PRUNED)
                log.info(
                    "optuna trial %d: %s (stopped after epoch %d by sweep.pruning)",
                    number,
                    study.get_trials(deepcopy=False)[number].state.name,
                    value.epoch,
                )
                return None
            return tell(study, trial, values=values, state=state)

        impl.launcher.launch = launch_and_note
        optuna.study.Study.tell = tell_pruned
        optuna.create_study = create_and_replay
        try:
            return impl.sweep(arguments)
        finally:
            optuna.create_study = create_study
            optuna.study.Study.tell = tell
            impl.launcher.launch = launch
