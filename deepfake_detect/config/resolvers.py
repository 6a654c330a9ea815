"""OmegaConf resolvers used by the Hydra configs (`${dfd.root:}` and friends)."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from deepfake_detect.config.paths import DEFAULT_TRACKING_URI, PROJECT_ROOT


def optimisation_direction(monitor: str) -> str:
    """``minimize`` for a loss, ``maximize`` for auc/acc/precision/recall."""
    return "minimize" if str(monitor).endswith("loss") else "maximize"


def server_uri(host: str | None, port: int | None) -> str:
    """``tracking=server``'s URI: ``http://HOST:PORT`` when either is set; otherwise the server
    in ``MLFLOW_TRACKING_URI`` (``source .cluster/env``), else ``http://127.0.0.1:5000``."""
    if host is None and port is None:
        from_env = os.environ.get("MLFLOW_TRACKING_URI", "")
        if from_env.startswith(("http://", "https://")):
            return from_env
    return f"http://{host or '127.0.0.1'}:{port or 5000}"


def register_resolvers() -> None:
    """Register the project's resolvers once per process (idempotent)."""
    if not OmegaConf.has_resolver("dfd.root"):
        OmegaConf.register_new_resolver("dfd.root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("dfd.direction"):  # Optuna's direction for trainer.monitor
        OmegaConf.register_new_resolver("dfd.direction", optimisation_direction)
    if not OmegaConf.has_resolver("dfd.default_tracking_uri"):
        OmegaConf.register_new_resolver("dfd.default_tracking_uri", lambda: DEFAULT_TRACKING_URI)
    if not OmegaConf.has_resolver("dfd.server_uri"):
        OmegaConf.register_new_resolver("dfd.server_uri", server_uri)
