"""What a run records about where it came from: MLflow's source tags (the run table's Source
and User columns) and its data as a dataset input (the Dataset column)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.store import git_commit
from deepfake_detect.tracking.vocabulary import VERSION_TAG_PREFIX, VERSIONED_PACKAGES


def source_tags(entry_point: str) -> dict[str, str]:
    """``mlflow.source.name`` (the command), type, ``mlflow.user`` and the git commit."""
    import getpass

    from mlflow.utils import mlflow_tags

    commit = git_commit().removesuffix("-dirty")
    tags = {
        mlflow_tags.MLFLOW_SOURCE_NAME: entry_point,
        mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
        mlflow_tags.MLFLOW_USER: _user(getpass),
    }
    if commit != "unknown":
        tags[mlflow_tags.MLFLOW_GIT_COMMIT] = commit
    return tags


def environment_tags() -> dict[str, str]:
    """The versions a number depends on (``version.tensorflow``, ``version.keras``, ...,
    ``version.python``) and the CPU model: ``reproduce`` warns when they differ. Read from
    the installed packages' metadata, so TensorFlow is not imported for them."""
    import platform
    from importlib import metadata

    tags = {f"{VERSION_TAG_PREFIX}python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            tags[f"{VERSION_TAG_PREFIX}{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"{VERSION_TAG_PREFIX}{package}"] = "not installed"
    tags[f"{VERSION_TAG_PREFIX}cpu"] = _cpu_model() or platform.machine()
    return tags


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _user(getpass) -> str:
    """The login name; ``unknown`` in containers whose user id has no name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


DUPLICATE_KEY = re.compile(r"UniqueViolation|duplicate key|UNIQUE constraint failed", re.I)


def log_dataset_input(
    client: MlflowClient,
    run_id: str,
    name: str,
    digest: str,
    root: Path,
    counts: dict[str, int],
    class_names: list[str],
    context: str = "train",
) -> None:
    """The data as an MLflow dataset input: name, digest (the data fingerprint), source (the
    root), images per split and class names as its profile, used in ``context``."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    dataset = Dataset(
        name=name,
        digest=digest,
        source_type="local",
        source=json.dumps({"uri": str(root)}),
        profile=json.dumps({"num_images": counts, "class_names": class_names}),
    )
    inputs = [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as error:
        # parallel sweep jobs logging the same new dataset race on MLflow's check-then-insert
        # (a unique-key violation on PostgreSQL or SQLite): the dataset exists now, so link it
        if not DUPLICATE_KEY.search(str(error)):
            raise
        client.log_inputs(run_id, datasets=inputs)
