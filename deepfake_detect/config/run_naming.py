"""What Hydra tells a job about itself: overrides, multirun membership, sweep parent run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PARENT_RUN_ENV = "DEEPFAKE_DETECT_SWEEP_RUN_ID"
# overrides that do not change what is trained, so they stay out of run names
_NAME_EXCLUDED_PREFIXES = (
    "experiment",
    "hparams_search",
    "tracking",
    "registry",
    "paths",
    "hydra",
    "data.root",
    "data.cache",
    "trainer.verbose",
    "verbose",
    "trainer.callbacks",
    "trainer.resume",
    "trainer.checkpoint",
    "trainer.heartbeat",
    "sweep.skip_finished",
    "model=",
)


@dataclass(frozen=True)
class JobContext:
    """Hydra facts about the current job (empty outside Hydra)."""

    overrides: tuple[str, ...] = ()
    is_multirun: bool = False
    parent_run_id: str | None = None
    job_num: int | None = None
    choices: dict[str, str] = field(default_factory=dict)


def current_job() -> JobContext:
    """Read the HydraConfig when a Hydra app is running, else an empty context."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return JobContext()
    hydra_cfg = HydraConfig.get()
    is_multirun = hydra_cfg.mode == RunMode.MULTIRUN
    return JobContext(
        overrides=tuple(hydra_cfg.overrides.task),
        is_multirun=is_multirun,
        parent_run_id=os.environ.get(PARENT_RUN_ENV) if is_multirun else None,
        job_num=hydra_cfg.job.num if is_multirun else None,
        choices={k: str(v) for k, v in hydra_cfg.runtime.choices.items()},
    )


def run_name(stem: str, overrides: tuple[str, ...]) -> str:
    """``cnn_baseline-dropout=0.2-lr=0.001``: the stem plus overrides that change training.

    A key given twice is named once, with its last value (the one Hydra applied).
    """
    parts: dict[str, str] = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if override.startswith(_NAME_EXCLUDED_PREFIXES) or key.startswith(_NAME_EXCLUDED_PREFIXES):
            continue
        parts[key] = f"{key.rsplit('.', 1)[-1]}={_short(value)}"
    return "-".join([stem, *parts.values()])


def _short(value: str) -> str:
    """Floats with 4 significant digits (Optuna proposes 0.13581025224334...)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if value.isdigit() else f"{number:.4g}"
