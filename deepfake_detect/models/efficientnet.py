"""EfficientNetV2-B0 transfer model (the seed's ``efficientnetv2-b0_retrain``)."""

from __future__ import annotations

import keras

from deepfake_detect.models.heads import apply_backbone, dense_head, image_input
from deepfake_detect.models.weights import resolve_weights


def build_efficientnetv2_b0(
    image_size: int,
    dropout: float = 0.2,
    weights: str | None = None,
    freeze_backbone: bool = False,
    dense_units: int = 128,
    name: str = "efficientnetv2_b0",
) -> keras.Model:
    """EfficientNetV2B0 backbone (its own preprocessing expects 0..255 inputs) plus a head."""
    backbone = keras.applications.EfficientNetV2B0(
        include_top=False,
        weights=resolve_weights(weights, "EfficientNetV2B0"),
        input_shape=(image_size, image_size, 3),
        include_preprocessing=True,
        pooling="avg",
    )
    inputs = image_input(image_size)
    x = apply_backbone(backbone, inputs, freeze_backbone)
    return keras.Model(inputs, dense_head(x, dropout, dense_units), name=name)
