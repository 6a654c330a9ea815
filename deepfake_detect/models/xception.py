"""Xception transfer model (Chollet 2017; the FaceForensics++ deepfake baseline)."""

from __future__ import annotations

import keras
from keras import layers

from deepfake_detect.models.heads import (
    apply_backbone,
    dense_head,
    image_input,
    require_image_size,
)
from deepfake_detect.models.weights import resolve_weights

# keras.applications.Xception refuses inputs smaller than 71 x 71.
MIN_IMAGE_SIZE = 71


def build_xception(
    image_size: int,
    dropout: float = 0.2,
    weights: str | None = None,
    freeze_backbone: bool = False,
    dense_units: int = 128,
    name: str = "xception",
) -> keras.Model:
    """Xception backbone plus a head. Inputs are 0..255 like every preset; they are scaled to
    -1..1 in the model (``keras.applications.xception.preprocess_input``), which Xception's
    ImageNet weights expect."""
    require_image_size(image_size, MIN_IMAGE_SIZE, name)
    backbone = keras.applications.Xception(
        include_top=False,
        weights=resolve_weights(weights, "Xception"),
        input_shape=(image_size, image_size, 3),
        pooling="avg",
    )
    inputs = image_input(image_size)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = apply_backbone(backbone, x, freeze_backbone)
    return keras.Model(inputs, dense_head(x, dropout, dense_units), name=name)
