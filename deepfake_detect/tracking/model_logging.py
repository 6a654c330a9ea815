"""Log a Keras model to the active MLflow run (signature, pinned requirements)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from deepfake_detect.tracking.vocabulary import MODEL_ARTIFACT

if TYPE_CHECKING:
    import keras


def pinned_requirements() -> list[str]:
    """Exact versions of what the model needs to load (skips slow requirement inference)."""
    pins = []
    for package in ("tensorflow", "keras", "numpy", "pillow"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def image_signature(image_size: int) -> ModelSignature:
    """float32 (N, size, size, 3) images in 0..255 -> float32 (N, 1) probability of positive."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, image_size, image_size, 3))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1))]),
    )


def log_keras_model(model: keras.Model, image_size: int, metadata: dict | None = None) -> str:
    """Log ``model`` as ``model`` in the active run with a signature; return its URI.

    ``metadata`` (decision threshold, class names, positive class, image size) travels in the
    model's MLmodel file, so a client can interpret a score without the training run.
    """
    info = mlflow.keras.log_model(
        model,
        name=MODEL_ARTIFACT,
        signature=image_signature(image_size),
        pip_requirements=pinned_requirements(),
        metadata=metadata,
    )
    return info.model_uri
