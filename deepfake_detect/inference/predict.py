"""Score image files and folders with a loaded model: one row per image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from deepfake_detect.inference import image_inputs
from deepfake_detect.inference.model_source import LoadedModel


@dataclass
class Predictions:
    """``(path, probability of the positive class, label)`` rows and what was skipped."""

    threshold: float
    positive: str
    rows: list[tuple[str, float, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def predict_paths(
    loaded: LoadedModel,
    inputs: image_inputs.ImageInputs,
    batch_size: int,
    threshold: float | None = None,
    advance: Callable[[int], None] | None = None,
) -> Predictions:
    """Label each image ``positive`` when ``prob > threshold`` (default: the model's own).

    ``inputs`` come from :func:`image_inputs.collect`, called before the model is loaded so
    a wrong path fails fast. ``advance(n)`` hears of every ``n`` images scored or skipped.
    """
    negative, positive = loaded.meaning.class_names
    from deepfake_detect.models.heads import predict_scores  # Keras: only once a model is loaded

    rule = loaded.meaning.threshold if threshold is None else threshold
    result = Predictions(threshold=rule, positive=positive, skipped=inputs.skipped)
    done = 0
    for batch in image_inputs.decode_batches(inputs, loaded.image_size, batch_size):
        prob = predict_scores(loaded.model, batch.images)
        result.rows += [
            (str(path), float(score), positive if score > rule else negative)
            for path, score in zip(batch.paths, prob, strict=True)
        ]
        if advance:
            advance(len(result.rows) + len(inputs.skipped) - done)
            done = len(result.rows) + len(inputs.skipped)
    return result
