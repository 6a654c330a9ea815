"""Find, describe and create registered model versions for training runs."""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from deepfake_detect.tracking.vocabulary import MODEL_ARTIFACT

VERSION_METRICS: tuple[str, ...] = ("val_auc", "val_acc", "test_auc")


class RegistryError(LookupError):
    """A registered model, version or alias that does not exist (message lists what does)."""


def registered_names(client: MlflowClient) -> list[str]:
    """All registered model names."""
    return sorted(model.name for model in client.search_registered_models())


def require_model(client: MlflowClient, name: str) -> None:
    """Raise RegistryError listing the registered models when ``name`` is not one."""
    if name not in registered_names(client):
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


def version_tags(client: MlflowClient, run_id: str) -> dict[str, str]:
    """Run id, model config, headline metrics, dataset fingerprint and git commit."""
    run = client.get_run(run_id)
    tags = {
        "run_id": run_id,
        "model_config": run.data.tags.get("model", ""),
        "dataset_fingerprint": run.data.tags.get("dataset_fingerprint", ""),
        "git_commit": run.data.tags.get("git_commit", ""),
    }
    for key in VERSION_METRICS:
        if key in run.data.metrics:
            tags[key] = f"{run.data.metrics[key]:.6f}"
    return tags


def register_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion:
    """Register the model logged by ``run_id`` as a new version of ``name``, with tags."""
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    version = mlflow.register_model(
        run_model_uri(client, run_id), name, tags=version_tags(client, run_id)
    )
    return client.get_model_version(name, version.version)
