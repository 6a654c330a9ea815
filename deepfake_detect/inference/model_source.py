"""Resolve a model URI in a given store and load it with what interprets its scores.

Everything goes through the tracking/registry URI the caller resolved (``--tracking-uri``,
else ``MLFLOW_TRACKING_URI``, else the project store): MLflow's fluent loaders read
process-global URIs, so :func:`open_model` sets both before loading and never falls back to
MLflow's default ``./mlflow.db``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from deepfake_detect.config.native_logs import import_tensorflow
from deepfake_detect.metrics.binary import DEFAULT_THRESHOLD
from deepfake_detect.tracking.registered_models import RegistryError, describe_model, require_model
from deepfake_detect.tracking.store import require_existing_store, store_client
from deepfake_detect.tracking.vocabulary import (
    CLASS_NAMES_KEY,
    CLASS_NAMES_TAG,
    IMAGE_SIZE_KEY,
    THRESHOLD_KEY,
    THRESHOLD_METRIC,
)

DEFAULT_CLASSES = ("Real", "Fake")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})(?:/.*)?$")
URI_HELP = "use models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: its training run and, when registered, name and version."""

    uri: str
    run_id: str | None
    model_name: str | None
    version: str | None


@dataclass(frozen=True)
class ScoreMeaning:
    """How to read a score: the decision rule ``prob > threshold`` and ``[negative, positive]``."""

    threshold: float
    class_names: tuple[str, str]
    image_size: int | None


@dataclass(frozen=True)
class LoadedModel:
    """A Keras model with its source and the meaning of its scores."""

    source: ModelSource
    meaning: ScoreMeaning
    model: Any  # keras.Model (TensorFlow is imported only when loading)

    @property
    def image_size(self) -> int:
        return self.meaning.image_size or int(self.model.input_shape[1])


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
    if uri.startswith("models:/m-"):
        return ModelSource(uri, None, None, None)
    raise RegistryError(f"model URI {uri!r} not understood; {URI_HELP}")


def score_meaning(client: MlflowClient, source: ModelSource, metadata: dict | None) -> ScoreMeaning:
    """From the logged model's metadata; models logged before it existed use their run."""
    metadata = metadata or {}
    threshold = metadata.get(THRESHOLD_KEY)
    classes = metadata.get(CLASS_NAMES_KEY)
    if (threshold is None or not classes) and source.run_id is not None:
        run = client.get_run(source.run_id)
        threshold = threshold if threshold is not None else run.data.metrics.get(THRESHOLD_METRIC)
        classes = classes or (run.data.tags.get(CLASS_NAMES_TAG) or "").split(",")
    if not classes or len(classes) != 2:
        classes = DEFAULT_CLASSES
    return ScoreMeaning(
        threshold=float(threshold) if threshold is not None else DEFAULT_THRESHOLD,
        class_names=(str(classes[0]), str(classes[1])),
        image_size=int(metadata[IMAGE_SIZE_KEY]) if metadata.get(IMAGE_SIZE_KEY) else None,
    )


def open_model(tracking_uri: str, model_uri: str) -> LoadedModel:
    """Resolve ``model_uri`` in ``tracking_uri`` and load it (imports TensorFlow).

    Raises RegistryError (or StoreNotFoundError) with one line saying what exists.
    """
    import mlflow

    require_existing_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = store_client(tracking_uri)
    source = resolve_source(client, model_uri)
    import_tensorflow()
    try:
        info = mlflow.models.get_model_info(source.uri)
        import mlflow.keras

        model = mlflow.keras.load_model(source.uri)
    except (MlflowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise RegistryError(f"cannot load {model_uri} from {tracking_uri}: {first_line}") from error
    return LoadedModel(source, score_meaning(client, source, info.metadata), model)
