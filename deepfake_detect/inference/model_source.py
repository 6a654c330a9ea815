"""Resolve a model URI to its run, threshold and classes, with errors that list what exists."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.registered_models import RegistryError, describe_model, require_model
from deepfake_detect.tracking.vocabulary import THRESHOLD_METRIC

DEFAULT_THRESHOLD = 0.5
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})(?:/.*)?$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: its training run and, when registered, name and version."""

    uri: str
    run_id: str | None
    model_name: str | None
    version: str | None


def resolve_source(client: MlflowClient, uri: str) -> ModelSource:
    """Check that a ``models:/`` or ``runs:/`` URI exists and find its training run."""
    registered = _MODELS_URI.match(uri)
    if registered:
        name, number, alias = registered["name"], registered["version"], registered["alias"]
        require_model(client, name)
        try:
            version = (
                client.get_model_version(name, number)
                if number
                else client.get_model_version_by_alias(name, alias)
            )
        except MlflowException as error:
            missing = f"version {number}" if number else f"alias {alias!r}"
            raise RegistryError(
                f"{name} has no {missing}; {describe_model(client, name)}"
            ) from error
        return ModelSource(uri, version.run_id, name, str(version.version))
    run_uri = _RUNS_URI.match(uri)
    if run_uri:
        try:
            client.get_run(run_uri["run_id"])
        except MlflowException as error:
            raise RegistryError(f"no run {run_uri['run_id']} in {client.tracking_uri}") from error
        return ModelSource(uri, run_uri["run_id"], None, None)
    if uri.startswith(("models:/m-", "file:", "/")):
        return ModelSource(uri, None, None, None)
    raise RegistryError(
        f"model URI {uri!r} not understood; use models:/NAME@ALIAS, models:/NAME/VERSION "
        "or runs:/RUN_ID/model"
    )


def decision_threshold(client: MlflowClient, source: ModelSource) -> float:
    """The validation Youden threshold logged at training, else 0.5."""
    if source.run_id is None:
        return DEFAULT_THRESHOLD
    metrics = client.get_run(source.run_id).data.metrics
    return float(metrics.get(THRESHOLD_METRIC, DEFAULT_THRESHOLD))


def class_names(client: MlflowClient, source: ModelSource) -> list[str]:
    """``[negative, positive]`` as the training run logged them (default Real, Fake)."""
    if source.run_id is not None:
        names = client.get_run(source.run_id).data.tags.get("class_names")
        if names:
            return names.split(",")
    return ["Real", "Fake"]


def load_keras(source: ModelSource):  # -> keras.Model
    """Load the Keras model (imports TensorFlow)."""
    import mlflow.keras

    return mlflow.keras.load_model(source.uri)
