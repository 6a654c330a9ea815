"""Where the project lives, and so where its store, data, cache and results go by default.

The project directory is, in this order: ``$DEEPFAKE_DETECT_HOME``; the source checkout this
package was installed from in editable mode (so every command finds the same ``mlruns/`` from
any working directory); else the current working directory (a wheel installed into
site-packages never writes there).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "DEEPFAKE_DETECT_HOME"
PACKAGE_DIR: Path = Path(__file__).resolve().parents[1]
CONFIG_DIR: Path = PACKAGE_DIR / "conf"


def find_project_root() -> Path:
    """``$DEEPFAKE_DETECT_HOME``, else the editable checkout, else the working directory."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / ".git").exists():
        return checkout
    return Path.cwd().resolve()


PROJECT_ROOT: Path = find_project_root()
MLRUNS_DIR: Path = PROJECT_ROOT / "mlruns"
DEFAULT_DB_PATH: Path = MLRUNS_DIR / "mlflow.db"
DEFAULT_TRACKING_URI: str = f"sqlite:///{DEFAULT_DB_PATH}"
DEFAULT_ARTIFACT_ROOT: Path = MLRUNS_DIR / "artifacts"
DEFAULT_CACHE_DIR: Path = MLRUNS_DIR / ".cache"
DEMO_DATA_DIR: Path = PROJECT_ROOT / "data" / "synthetic"
RESULTS_DIR: Path = PROJECT_ROOT / "results"
