"""Evaluate a model on one split of a dataset and log it as an evaluation run."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from deepfake_detect.data.decode_cache import load_split
from deepfake_detect.data.layout import fingerprint, require_root, scan_split
from deepfake_detect.data.pipeline import make_dataset
from deepfake_detect.data.prepare import require_both_classes
from deepfake_detect.data.progress import reported_progress
from deepfake_detect.inference.model_source import LoadedModel
from deepfake_detect.metrics.report import SplitReport, report_split
from deepfake_detect.models.heads import predict_scores
from deepfake_detect.tracking.lifecycle import tracked_run
from deepfake_detect.tracking.run_inputs import log_dataset_input, source_tags
from deepfake_detect.tracking.store import ensure_experiment, store_client
from deepfake_detect.tracking.vocabulary import EVALUATION, RUN_TYPE_TAG, THRESHOLD_KEY

SPLIT_PREFIXES = {"Train": "train", "Validation": "val", "Test": "test"}


@dataclass(frozen=True)
class Evaluation:
    """An evaluation run's id, what it scored and its metrics (at 0.5 and the threshold)."""

    run_id: str
    prefix: str
    images: int
    folder: Path
    report: SplitReport


def evaluate_model(
    loaded: LoadedModel,
    tracking_uri: str,
    data_root: Path,
    split: str,
    experiment: str,
    batch_size: int,
    cache_dir: Path | None,
) -> Evaluation:
    """Score ``data_root/split`` and log metrics and plots in a run (FINISHED, FAILED or
    KILLED, never left RUNNING). Images stream from the decoded cache (``cache_dir``, shared
    with training; None: a temporary file) through the training pipeline, so memory does not
    grow with the split; unreadable images are skipped and counted."""
    names = list(loaded.meaning.class_names)
    files = scan_split(require_root(data_root), split, names)
    decoded = load_split(files, loaded.image_size, skip_corrupt=True, cache_dir=cache_dir)
    require_both_classes(files, decoded, names)
    dataset = make_dataset(decoded, batch_size, shuffle=False, seed=0)
    prefix = SPLIT_PREFIXES.get(split, split.lower())
    source = loaded.source
    tags = {
        **source_tags("deepfake-detect evaluate"),
        RUN_TYPE_TAG: EVALUATION,
        "model_uri": source.uri,
        "source_run_id": source.run_id or "",
        "registered_model_name": source.model_name or "",
        "registered_model_version": source.version or "",
        "data_root": str(files.root),
        "split": split,
        "skipped_images": str(len(decoded.skipped)),
        THRESHOLD_KEY: f"{loaded.meaning.threshold:.6f}",
    }
    client = store_client(tracking_uri)
    experiment_id = ensure_experiment(tracking_uri, experiment)
    with tracked_run(client, experiment_id, f"evaluate-{source.uri}", tags) as run:
        run_id = run.info.run_id
        log_dataset_input(
            client,
            run_id,
            files.root.name,
            fingerprint([files]),
            files.root,
            {prefix: len(decoded)},
            names,
            context="eval",
        )
        with reported_progress(len(decoded), f"evaluating on {files.root / split}") as advance:
            prob = predict_scores(loaded.model, dataset, advance)
        with tempfile.TemporaryDirectory() as tmp:
            report = report_split(
                prefix, decoded.labels, prob, names, Path(tmp), loaded.meaning.threshold
            )
            client.log_artifacts(run_id, tmp, artifact_path="plots")
        metrics = {f"{prefix}_{key}": value for key, value in report.metrics.items()}
        metrics |= {
            f"{prefix}_{key}_at_threshold": value
            for key, value in (report.at_threshold or {}).items()
            if key != "loss" and key != "auc"
        }
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
    if source.model_name and source.version:
        client.set_model_version_tag(
            source.model_name,
            source.version,
            f"evaluation.{prefix}_auc",
            f"{report.metrics['auc']:.6f}",
        )
        client.set_model_version_tag(
            source.model_name, source.version, "evaluation.last_run_id", run_id
        )
    return Evaluation(run_id, prefix, len(decoded), files.root / split, report)
