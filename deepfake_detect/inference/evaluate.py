"""The evaluation protocol: score a model on one split of a dataset and log everything a
deepfake study reports in one evaluation run, linked to the model version.

Logged: the metrics at 0.5 and at the model's frozen threshold (AUC, EER, AP, ACC, ...),
calibration (ECE and a reliability diagram), robustness (the split JPEG re-encoded, rescaled
and blurred on the fly, AUC/EER/ACC/AP per level and a curve plot), an error review (the most
confident false positives and negatives with their scores, and Grad-CAM overlays of them)
and a CSV of every image's scores.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, RunData
from mlflow.tracking import MlflowClient

from deepfake_detect.data.decode_cache import DecodedSplit, load_split
from deepfake_detect.data.layout import fingerprint, require_root, scan_split
from deepfake_detect.data.perturbations import DEFAULT_SPEC, Perturbation, parse_spec, spec_text
from deepfake_detect.data.pipeline import make_dataset
from deepfake_detect.data.prepare import require_both_classes
from deepfake_detect.data.progress import reported_progress
from deepfake_detect.inference.gradcam import grad_cam
from deepfake_detect.inference.model_source import LoadedModel
from deepfake_detect.metrics import protocol_plots
from deepfake_detect.metrics.binary import binary_metrics
from deepfake_detect.metrics.calibration import ECE_BINS, reliability
from deepfake_detect.metrics.report import SplitReport, report_split
from deepfake_detect.models.heads import predict_scores
from deepfake_detect.tracking.lifecycle import tracked_run
from deepfake_detect.tracking.run_inputs import log_dataset_input, source_tags
from deepfake_detect.tracking.store import ensure_experiment, store_client
from deepfake_detect.tracking.vocabulary import (
    DATASET_TAG,
    EVALUATION,
    EVALUATION_SPLIT_TAG,
    FINGERPRINT_TAG,
    ROBUSTNESS_TAG,
    RUN_TYPE_TAG,
    SOURCE_RUN_TAG,
    THRESHOLD_KEY,
    TRAIN_DATASET_TAG,
    TRAIN_FINGERPRINT_TAG,
    evaluation_version_tag,
)

log = logging.getLogger(__name__)

SPLIT_PREFIXES = {"Train": "train", "Validation": "val", "Test": "test"}
ROBUSTNESS_KEYS = ("auc", "eer", "acc", "ap")  # logged per perturbation level
THRESHOLD_FREE = frozenset({"loss", "auc", "eer", "ap"})  # the same at every threshold


@dataclass(frozen=True)
class Protocol:
    """What an evaluation measures beyond the clean metrics."""

    perturbations: tuple[Perturbation, ...] = parse_spec(DEFAULT_SPEC)
    ece_bins: int = ECE_BINS
    review: int = 8  # the k most confident false positives and false negatives
    gradcam: bool = True
    system_metrics_seconds: float | None = 10.0  # MLflow system metrics sampling (None: off)


@dataclass(frozen=True)
class Evaluation:
    """An evaluation run's id, what it scored and what it measured."""

    run_id: str
    prefix: str
    images: int
    folder: Path
    report: SplitReport
    ece: float
    robustness: tuple[tuple[Perturbation, dict[str, float]], ...]
    earlier_runs: tuple[str, ...] = field(default=())


def earlier_evaluations(
    client: MlflowClient, experiment_id: str, source_run: str, data_fingerprint: str, split: str
) -> tuple[str, ...]:
    """Ids of earlier evaluation runs of the same model on the same data and split (a rerun
    is a new run; this says so)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.{RUN_TYPE_TAG} = '{EVALUATION}' AND tags.{SOURCE_RUN_TAG} = '{source_run}' "
            f"AND tags.{FINGERPRINT_TAG} = '{data_fingerprint}' "
            f"AND tags.{EVALUATION_SPLIT_TAG} = '{split}'"
        ),
        order_by=["attributes.start_time DESC"],
    )
    return tuple(run.info.run_id for run in runs)


def training_data_name(trained: RunData | None) -> str:
    """What the model was trained on, named as evaluation runs name their data: the folder
    name of its ``data.root`` (else its dataset tag), so the matrix's rows and columns match."""
    if trained is None:
        return ""
    root = trained.params.get("data.root", "")
    return Path(root).name if root and root != "None" else trained.tags.get(DATASET_TAG, "")


def score_split(
    loaded: LoadedModel,
    decoded: DecodedSplit,
    batch_size: int,
    what: str,
    perturbation: Perturbation | None = None,
) -> np.ndarray:
    """Scores of every usable image, streamed from the (memory-mapped) decoded split."""
    dataset = make_dataset(decoded, batch_size, shuffle=False, seed=0, perturbation=perturbation)
    with reported_progress(len(decoded), what) as advance:
        return predict_scores(loaded.model, dataset, advance)


def confident_errors(
    labels: np.ndarray, prob: np.ndarray, threshold: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` most confident false positives (highest scores of negatives
    above ``threshold``) and false negatives (lowest scores of positives at or below it)."""
    positive = np.asarray(labels).ravel() > 0
    false_pos = np.flatnonzero(~positive & (prob > threshold))
    false_neg = np.flatnonzero(positive & (prob <= threshold))
    false_pos = false_pos[np.argsort(-prob[false_pos], kind="stable")][:k]
    false_neg = false_neg[np.argsort(prob[false_neg], kind="stable")][:k]
    return false_pos, false_neg


def write_scores_csv(
    path: Path,
    decoded: DecodedSplit,
    base: Path,
    names: list[str],
    prob: np.ndarray,
    threshold: float,
    perturbed: dict[str, np.ndarray],
) -> None:
    """One row per image: path, true class, score, decision, and its score per perturbation."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "score", "predicted", "correct", *perturbed])
        for index, image_path in enumerate(decoded.paths):
            label = int(decoded.labels[index])
            predicted = int(prob[index] > threshold)
            writer.writerow(
                [
                    image_path.relative_to(base).as_posix(),
                    names[label],
                    f"{prob[index]:.6f}",
                    names[predicted],
                    int(predicted == label),
                    *(f"{scores[index]:.6f}" for scores in perturbed.values()),
                ]
            )


def review_errors(
    loaded: LoadedModel,
    decoded: DecodedSplit,
    prob: np.ndarray,
    protocol: Protocol,
    out: Path,
) -> None:
    """Grids of the most confident errors with their scores, plus their Grad-CAM overlays."""
    names = list(loaded.meaning.class_names)
    threshold = loaded.meaning.threshold
    false_pos, false_neg = confident_errors(decoded.labels, prob, threshold, protocol.review)
    chosen = np.r_[false_pos, false_neg].astype(int)
    images = np.asarray(decoded.images[decoded.rows[chosen]]) if len(chosen) else None
    kinds = ["FP"] * len(false_pos) + ["FN"] * len(false_neg)
    captions = [
        f"{kind} {decoded.paths[i].name[:22]}\n{names[int(decoded.labels[i])]}, score {prob[i]:.3f}"
        for kind, i in zip(kinds, chosen, strict=True)
    ]
    listed = list(images) if images is not None else []
    title = (
        f"{len(false_pos)} most confident false positives, {len(false_neg)} false negatives "
        f"(score > {threshold:.3f} = {names[1]})"
    )
    protocol_plots.image_grid(listed, captions, title, out / "errors.png")
    if protocol.gradcam and images is not None:
        heatmaps = grad_cam(loaded.model, images, threshold)
        protocol_plots.image_grid(
            listed, captions, f"Grad-CAM of the decision: {title}", out / "gradcam.png", heatmaps
        )


def evaluate_model(
    loaded: LoadedModel,
    tracking_uri: str,
    data_root: Path,
    split: str,
    experiment: str,
    batch_size: int,
    cache_dir: Path | None,
    protocol: Protocol | None = None,
) -> Evaluation:
    """Score ``data_root/split`` under ``protocol`` and log it all in a new evaluation run
    (FINISHED, FAILED or KILLED, never left RUNNING). Images stream from the decoded cache
    (``cache_dir``, shared with training; None: a temporary file) and perturbations are
    applied per batch, so memory does not grow with the split; unreadable images are skipped
    and counted."""
    protocol = protocol or Protocol()
    names = list(loaded.meaning.class_names)
    files = scan_split(require_root(data_root), split, names)
    decoded = load_split(files, loaded.image_size, skip_corrupt=True, cache_dir=cache_dir)
    require_both_classes(files, decoded, names)
    prefix = SPLIT_PREFIXES.get(split, split.lower())
    source = loaded.source
    client = store_client(tracking_uri)
    trained = client.get_run(source.run_id).data if source.run_id else None
    data_fingerprint = fingerprint([files])
    tags = {
        **source_tags("deepfake-detect evaluate"),
        RUN_TYPE_TAG: EVALUATION,
        "model_uri": source.uri,
        SOURCE_RUN_TAG: source.run_id or "",
        "registered_model_name": source.model_name or "",
        "registered_model_version": source.version or "",
        "data_root": str(files.root),
        DATASET_TAG: files.root.name,
        FINGERPRINT_TAG: data_fingerprint,
        EVALUATION_SPLIT_TAG: split,
        TRAIN_DATASET_TAG: training_data_name(trained),
        TRAIN_FINGERPRINT_TAG: trained.tags.get(FINGERPRINT_TAG, "") if trained else "",
        ROBUSTNESS_TAG: spec_text(protocol.perturbations),
        "ece_bins": str(protocol.ece_bins),
        "skipped_images": str(len(decoded.skipped)),
        THRESHOLD_KEY: f"{loaded.meaning.threshold:.6f}",
    }
    experiment_id = ensure_experiment(tracking_uri, experiment)
    earlier = earlier_evaluations(
        client, experiment_id, source.run_id or "", data_fingerprint, split
    )
    threshold = loaded.meaning.threshold
    with tracked_run(
        client,
        experiment_id,
        f"evaluate-{source.uri}",
        tags,
        system_metrics_seconds=protocol.system_metrics_seconds,
    ) as run:
        run_id = run.info.run_id
        log_dataset_input(
            client,
            run_id,
            files.root.name,
            data_fingerprint,
            files.root,
            {prefix: len(decoded)},
            names,
            context="eval",
        )
        prob = score_split(loaded, decoded, batch_size, f"evaluating on {files.root / split}")
        robustness: list[tuple[Perturbation, dict[str, float]]] = []
        perturbed: dict[str, np.ndarray] = {}
        for perturbation in protocol.perturbations:
            scores = score_split(
                loaded, decoded, batch_size, f"robustness: {perturbation.describe()}", perturbation
            )
            perturbed[perturbation.name] = scores
            measured = binary_metrics(decoded.labels, scores)
            robustness.append((perturbation, {key: measured[key] for key in ROBUSTNESS_KEYS}))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            report = report_split(prefix, decoded.labels, prob, names, out / "plots", threshold)
            curve = reliability(decoded.labels, prob, protocol.ece_bins)
            protocol_plots.reliability_diagram(
                curve, f"Reliability ({prefix})", out / "plots" / f"reliability_{prefix}.png"
            )
            if robustness:
                write_robustness(report.metrics, robustness, prefix, out)
            review_errors(loaded, decoded, prob, protocol, out / "review")
            write_scores_csv(
                out / "scores.csv", decoded, files.root / split, names, prob, threshold, perturbed
            )
            client.log_artifacts(run_id, tmp)
        metrics = {f"{prefix}_{key}": value for key, value in report.metrics.items()}
        metrics[f"{prefix}_ece"] = curve.ece
        metrics |= {
            f"{prefix}_{key}_at_threshold": value
            for key, value in (report.at_threshold or {}).items()
            if key not in THRESHOLD_FREE
        }
        for perturbation, measured in robustness:
            metrics |= {f"{prefix}_{perturbation.name}_{k}": v for k, v in measured.items()}
        stamp = int(run.info.start_time)
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()])
    if source.model_name and source.version:
        link_version(client, source.model_name, source.version, files.root.name, prefix, metrics)
        client.set_model_version_tag(
            source.model_name, source.version, "evaluation.last_run_id", run_id
        )
    return Evaluation(
        run_id,
        prefix,
        len(decoded),
        files.root / split,
        report,
        curve.ece,
        tuple(robustness),
        earlier,
    )


def write_robustness(
    clean: dict[str, float],
    robustness: list[tuple[Perturbation, dict[str, float]]],
    prefix: str,
    out: Path,
) -> None:
    """``robustness.csv`` (one row per level, clean first) and the curves plot."""
    with (out / "robustness.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["perturbation", "level", *ROBUSTNESS_KEYS])
        writer.writerow(["clean", "", *(f"{clean[k]:.6f}" for k in ROBUSTNESS_KEYS)])
        for perturbation, measured in robustness:
            writer.writerow(
                [
                    perturbation.kind,
                    f"{perturbation.level:g}",
                    *(f"{measured[k]:.6f}" for k in ROBUSTNESS_KEYS),
                ]
            )
    levels = [(p.kind, p.name, p.level, m) for p, m in robustness]
    protocol_plots.robustness_curves(
        clean, levels, f"Robustness ({prefix})", out / "plots" / f"robustness_{prefix}.png"
    )


def link_version(
    client: MlflowClient,
    model_name: str,
    version: str,
    dataset: str,
    prefix: str,
    metrics: dict[str, float],
) -> None:
    """The version's own tags carry its headline evaluation numbers on this dataset."""
    for key in ("auc", "eer", "ap", "ece", "jpeg50_auc"):
        value = metrics.get(f"{prefix}_{key}")
        if value is not None:
            tag = evaluation_version_tag(dataset, f"{prefix}_{key}")
            client.set_model_version_tag(model_name, version, tag, f"{value:.6f}")
