"""Where the project lives and where its tracking store is by default."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT: Path = Path(__file__).resolve().parents[1]
MLRUNS_DIR: Path = PROJECT_ROOT / "mlruns"
DEFAULT_DB_PATH: Path = MLRUNS_DIR / "mlflow.db"
DEFAULT_TRACKING_URI: str = f"sqlite:///{DEFAULT_DB_PATH}"
DEFAULT_ARTIFACT_ROOT: Path = MLRUNS_DIR / "artifacts"
DEFAULT_CACHE_DIR: Path = MLRUNS_DIR / ".cache"
DEMO_DATA_DIR: Path = PROJECT_ROOT / "data" / "synthetic"
RESULTS_DIR: Path = PROJECT_ROOT / "results"
