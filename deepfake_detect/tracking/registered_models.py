"""Registered models: look up names, versions and aliases; register a run's model (the one
registration path of the trainer and ``promote``)."""

from __future__ import annotations

import re

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    DATASET_TAG,
    FINGERPRINT_TAG,
    GIT_COMMIT_TAG,
    IMAGE_SIZE_KEY,
    IMAGE_SIZE_PARAM,
    MODEL_ARTIFACT,
    MODEL_TAG,
)

VERSION_METRICS: tuple[str, ...] = ("val_auc", "val_acc", "test_auc")
NAMES_SHOWN = 20  # registered model names listed in a "not found" message
_ALIAS = re.compile(r"^[\w-]+$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")


class RegistryError(LookupError):
    """A registered model, version or alias that does not exist (message lists what does)."""


def validate_alias(alias: str) -> str:
    """MLflow's alias rules: letters, digits, ``_`` and ``-``; not ``latest`` nor ``v<N>``."""
    if not alias or len(alias) > 255 or not _ALIAS.match(alias):
        raise RegistryError(
            f"alias {alias!r} is not valid: use letters, digits, '_' and '-' (e.g. champion)"
        )
    if alias.lower() == "latest" or _VERSION_LIKE.match(alias):
        raise RegistryError(
            f"alias {alias!r} is reserved by MLflow (latest, v1, V2, ...); choose another name"
        )
    return alias


def registered_names(client: MlflowClient, limit: int = NAMES_SHOWN) -> list[str]:
    """Up to ``limit`` registered model names (for messages), paging through the registry."""
    names: list[str] = []
    token = None
    while len(names) < limit:
        page = client.search_registered_models(max_results=100, page_token=token)
        names += [model.name for model in page]
        token = page.token
        if not token:
            break
    return sorted(names)[:limit]


def model_exists(client: MlflowClient, name: str) -> bool:
    """True when ``name`` is a registered model (one lookup, any registry size)."""
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def require_model(client: MlflowClient, name: str) -> None:
    """Raise RegistryError listing some registered models when ``name`` is not one."""
    if not model_exists(client, name):
        raise RegistryError(
            f"no registered model {name!r}; registered models: "
            f"{', '.join(registered_names(client)) or '(none)'}"
        )


def describe_model(client: MlflowClient, name: str) -> str:
    """``versions 1, 2, 3; aliases champion->3, previous->2``."""
    versions = client.search_model_versions(f"name='{name}'")
    aliases = client.get_registered_model(name).aliases
    numbers = sorted(int(v.version) for v in versions)
    alias_text = ", ".join(f"{a}->{v}" for a, v in sorted(aliases.items())) or "(none)"
    return f"versions {', '.join(map(str, numbers)) or '(none)'}; aliases {alias_text}"


def version_for_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The newest version of ``name`` made from ``run_id``, if any."""
    try:
        versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version)) if versions else None


def alias_holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def run_model_uri(client: MlflowClient, run_id: str) -> str:
    """The URI of the model logged by ``run_id`` (``models:/m-...`` in MLflow 3)."""
    run = client.get_run(run_id)
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    named = [m for m in models if m.name == MODEL_ARTIFACT] or models
    if not named:
        raise RegistryError(f"run {run_id} logged no model (tracking.log_model was false?)")
    return f"models:/{named[0].model_id}"


def metrics_at_best_epoch(client: MlflowClient, run_id: str, keys: tuple[str, ...]) -> dict:
    """``keys`` at the run's ``best_epoch`` (its model), else their latest values."""
    run = client.get_run(run_id)
    best = run.data.metrics.get(BEST_EPOCH_METRIC)
    values = {}
    for key in keys:
        history = client.get_metric_history(run_id, key)
        at_best = [m for m in history if best is not None and m.step == int(best)]
        chosen = (at_best or history)[-1:] if history else []
        if chosen:
            values[key] = chosen[0].value
    return values


def version_tags(client: MlflowClient, run_id: str) -> dict[str, str]:
    """Run id, model config, best-epoch metrics, dataset fingerprint and git commit."""
    run = client.get_run(run_id)
    tags = {
        "run_id": run_id,
        "model_config": run.data.tags.get(MODEL_TAG, ""),
        DATASET_TAG: run.data.tags.get(DATASET_TAG, ""),
        FINGERPRINT_TAG: run.data.tags.get(FINGERPRINT_TAG, ""),
        IMAGE_SIZE_KEY: run.data.params.get(IMAGE_SIZE_PARAM, ""),
        GIT_COMMIT_TAG: run.data.tags.get(GIT_COMMIT_TAG, ""),
    }
    best = run.data.metrics.get(BEST_EPOCH_METRIC)
    if best is not None:
        tags[BEST_EPOCH_METRIC] = str(int(best))
    for key, value in metrics_at_best_epoch(client, run_id, VERSION_METRICS).items():
        tags[key] = f"{value:.6f}"
    return tags


def register_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion:
    """Register the model logged by ``run_id`` as a new version of ``name``, with tags.

    The fluent ``mlflow.register_model`` reads the process-global URIs: set both to the
    client's store first, so registration never goes to another store (or ``./mlflow.db``).
    """
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_registry_uri(client.tracking_uri)
    version = mlflow.register_model(
        run_model_uri(client, run_id), name, tags=version_tags(client, run_id)
    )
    return client.get_model_version(name, version.version)
