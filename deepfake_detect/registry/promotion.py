"""Decide and apply a promotion: the best comparable run's model takes the alias, safely.

Comparable means trained on the same data (dataset fingerprint or name) at the same image
size as the current alias holder, or as given. A better champion is never replaced unless
forced. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from deepfake_detect.leaderboard.records import RunRecord
from deepfake_detect.leaderboard.table import Leaderboard, select_step
from deepfake_detect.tracking.registered_models import (
    RegistryError,
    alias_holder,
    model_exists,
    register_run,
    run_model_uri,
    validate_alias,
    version_for_run,
)
from deepfake_detect.tracking.vocabulary import (
    BEST_EPOCH_METRIC,
    DATASET_TAG,
    FINGERPRINT_TAG,
    IMAGE_SIZE_PARAM,
    IMPORTED_TAG,
    higher_is_better,
)

PREVIOUS_ALIAS = "previous"  # the champion's former holder; other aliases get previous-<alias>


def previous_alias(alias: str) -> str:
    """Where the former holder of ``alias`` goes: ``previous`` for champion."""
    return PREVIOUS_ALIAS if alias == "champion" else f"{PREVIOUS_ALIAS}-{alias}"


@dataclass(frozen=True)
class DataIdentity:
    """What a run was trained on: dataset name and fingerprint, image size."""

    dataset: str
    fingerprint: str
    image_size: str

    @classmethod
    def of(cls, run: Run) -> DataIdentity:
        tags, params = run.data.tags, run.data.params
        return cls(
            tags.get(DATASET_TAG, ""),
            tags.get(FINGERPRINT_TAG, ""),
            params.get(IMAGE_SIZE_PARAM, ""),
        )

    def describe(self) -> str:
        return f"dataset {self.dataset or '?'} ({self.fingerprint or '?'}) at {self.image_size}px"


@dataclass(frozen=True)
class Candidate:
    """A run ranked by the metric, with the data it was trained on."""

    run_id: str
    name: str
    value: float
    data: DataIdentity


@dataclass(frozen=True)
class Plan:
    """What promote will do: ``move`` the alias, ``keep`` a better champion, or ``already``."""

    action: str
    candidate: Candidate
    version: ModelVersion | None  # the candidate's existing version, if registered
    champion: ModelVersion | None
    champion_value: float | None


def matches(data: DataIdentity, dataset: str | None, image_size: int | None) -> bool:
    """``dataset`` is a name or fingerprint; None matches anything."""
    if dataset is not None and dataset not in (data.dataset, data.fingerprint):
        return False
    return image_size is None or data.image_size == str(image_size)


def best_value(client: MlflowClient, run_id: str, metric: str) -> float | None:
    """A run's metric at its best epoch, chosen with the leaderboard's own rule."""
    history = {
        key: {m.step: m.value for m in client.get_metric_history(run_id, key)}
        for key in {metric, "train_loss", BEST_EPOCH_METRIC}
    }
    record = RunRecord(run_id, run_id, "FINISHED", "", "", {}, history)
    step = select_step(record, metric, "best")
    value = history[metric].get(step) if step is not None else None
    return None if value is None or math.isnan(value) else value


def has_logged_model(client: MlflowClient, run_id: str) -> bool:
    """True when the run logged a model (a run with ``tracking.log_model=false`` cannot win)."""
    try:
        run_model_uri(client, run_id)
    except RegistryError:
        return False
    return True


def is_better(value: float, than: float, metric: str) -> bool:
    return value > than if higher_is_better(metric) else value < than


def plan_promotion(
    client: MlflowClient,
    board: Leaderboard,
    model_name: str,
    alias: str,
    dataset: str | None = None,
    image_size: int | None = None,
    force: bool = False,
) -> Plan:
    """Pick the best run comparable with the champion (or ``dataset``/``image_size``)."""
    validate_alias(alias)
    if alias.startswith(PREVIOUS_ALIAS):
        raise RegistryError(
            f"alias {alias!r} is where promote keeps former holders; choose another"
        )
    registered = model_exists(client, model_name)
    champion = alias_holder(client, model_name, alias) if registered else None
    champion_data = DataIdentity.of(client.get_run(champion.run_id)) if champion else None
    if champion_data is not None:  # compare with the champion: what is not given is its own
        dataset = dataset if dataset is not None else champion_data.fingerprint
        image_size = image_size if image_size is not None else int(champion_data.image_size or 0)
    rows = board.row_dicts()
    identities: dict[str, DataIdentity] = {}
    imported: set[str] = set()  # rows of a hand-kept table (import-csv): no model, never picked

    def identity(run_id: str) -> DataIdentity:  # one get_run per run looked at, at most
        if run_id not in identities:
            run = client.get_run(run_id)
            identities[run_id] = DataIdentity.of(run)
            if run.data.tags.get(IMPORTED_TAG) == "true":
                imported.add(run_id)
        return identities[run_id]

    if champion_data is None and dataset is None:  # a first promotion must not mix datasets
        looked = {str(row["run_id"]): identity(str(row["run_id"])) for row in rows}
        everyone = [data for run_id, data in looked.items() if run_id not in imported]
        fingerprints = {data.fingerprint for data in everyone}
        if len(fingerprints) > 1:
            names = sorted({f"{d.dataset} ({d.fingerprint})" for d in everyone})
            raise RegistryError(
                f"no {alias} yet and runs on {len(fingerprints)} datasets ({', '.join(names)}); "
                "pick one with --dataset NAME|FINGERPRINT"
            )
    candidate = None
    for row in rows:
        data = identity(str(row["run_id"]))
        if str(row["run_id"]) in imported:
            continue
        if (
            matches(data, dataset, image_size or None)
            and not math.isnan(float(row[board.metric]))
            and has_logged_model(client, str(row["run_id"]))
        ):
            candidate = Candidate(
                str(row["run_id"]), str(row["model"]), float(row[board.metric]), data
            )
            break
    if candidate is None:
        wanted = f" on dataset {dataset}" if dataset else ""
        wanted += f" at {image_size}px" if image_size else ""
        left_out = (
            f" ({len(imported)} imported run(s), rows of a table logged by import-csv and "
            "tagged imported=true, were left out: promote never picks them)"
            if imported
            else ""
        )
        raise RegistryError(
            f"no FINISHED run{wanted} has a {board.metric} value and a logged model{left_out}; "
            "train one, or pass "
            "--dataset/--image-size to compare other runs"
        )
    version = version_for_run(client, model_name, candidate.run_id) if registered else None
    champion_value = best_value(client, champion.run_id, board.metric) if champion else None
    if champion is not None and champion.run_id == candidate.run_id:
        action = "already"
    elif (
        champion_value is not None
        and not force
        and not is_better(candidate.value, champion_value, board.metric)
    ):
        action = "keep"
    else:
        action = "move"
    return Plan(action, candidate, version, champion, champion_value)


def apply_plan(client: MlflowClient, plan: Plan, model_name: str, alias: str) -> ModelVersion:
    """Register the candidate if needed, give the old holder ``previous``, move ``alias``."""
    version = plan.version or register_run(client, model_name, plan.candidate.run_id)
    if plan.champion is not None and plan.champion.version != version.version:
        client.set_registered_model_alias(model_name, previous_alias(alias), plan.champion.version)
    client.set_registered_model_alias(model_name, alias, version.version)
    return version


@dataclass(frozen=True)
class Robustness:
    """A run's clean AUC and its AUC under JPEG quality 50, from its newest evaluation."""

    evaluation_run_id: str
    split: str
    clean_auc: float
    jpeg50_auc: float

    @property
    def drop(self) -> float:
        return self.clean_auc - self.jpeg50_auc


def newest_robustness(client: MlflowClient, run_id: str) -> Robustness | None:
    """The newest FINISHED evaluation of ``run_id``'s model that scored JPEG quality 50
    (Test preferred over other splits); None when there is none."""
    from deepfake_detect.leaderboard.api_reader import all_experiments, search_all
    from deepfake_detect.tracking.vocabulary import (
        EVALUATION,
        EVALUATION_SPLIT_TAG,
        RUN_TYPE_TAG,
        SOURCE_RUN_TAG,
    )

    ids = [e.experiment_id for e in all_experiments(client)]
    runs = search_all(
        client, ids, f"tags.{RUN_TYPE_TAG} = '{EVALUATION}' AND tags.{SOURCE_RUN_TAG} = '{run_id}'"
    )
    found = []
    for run in runs:
        split = run.data.tags.get(EVALUATION_SPLIT_TAG, "")
        prefix = {"Test": "test", "Validation": "val", "Train": "train"}.get(split, split.lower())
        metrics = run.data.metrics
        if run.info.status == "FINISHED" and f"{prefix}_jpeg50_auc" in metrics:
            found.append((split == "Test", run.info.start_time, run, split, prefix))
    if not found:
        return None
    _, _, run, split, prefix = max(found, key=lambda item: item[:2])
    metrics = run.data.metrics
    return Robustness(
        run.info.run_id, split, metrics[f"{prefix}_auc"], metrics[f"{prefix}_jpeg50_auc"]
    )


def check_robustness(client: MlflowClient, candidate: Candidate, max_drop: float) -> Robustness:
    """Refuse (RegistryError) a candidate whose AUC at JPEG quality 50 is more than
    ``max_drop`` below its clean AUC, or that has no such evaluation yet."""
    found = newest_robustness(client, candidate.run_id)
    if found is None:
        raise RegistryError(
            f"--max-robustness-drop needs an evaluation of run {candidate.name} "
            f"({candidate.run_id[:8]}) with JPEG quality 50; run `deepfake-detect evaluate "
            f"runs:/{candidate.run_id}/model --data ROOT` first (its default robustness "
            "includes jpeg:50); nothing was changed"
        )
    if not found.drop <= max_drop:  # NaN refuses too
        raise RegistryError(
            f"run {candidate.name} ({candidate.run_id[:8]}) loses {found.drop:.4f} AUC at JPEG "
            f"quality 50 ({found.clean_auc:.4f} -> {found.jpeg50_auc:.4f} on {found.split}, "
            f"evaluation run {found.evaluation_run_id[:8]}), more than --max-robustness-drop "
            f"{max_drop:g}; nothing was changed"
        )
    return found
