"""Plain CNNs: the seed's ``cnn_baseline`` and two deeper designs (``cnn_reid``, ``model_1``).

Every builder takes ``image_size`` and ``dropout``, expects float inputs in 0..255 and ends
in a float32 sigmoid (so mixed precision never reaches the output).
"""

from __future__ import annotations

import keras
from keras import layers

from deepfake_detect.models.heads import image_input, sigmoid_head


def build_cnn_baseline(
    image_size: int, dropout: float = 0.3, name: str = "cnn_baseline"
) -> keras.Model:
    """The seed notebook's baseline, layer for layer, with one dropout rate."""
    inputs = image_input(image_size)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv2D(32, (3, 3), activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv2D(8, (3, 3), activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(8, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    return keras.Model(inputs, sigmoid_head(x), name=name)


def _conv_block(x: keras.KerasTensor, filters: int, convs: int) -> keras.KerasTensor:
    for _ in range(convs):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return layers.MaxPooling2D(2)(x)


def build_vgg_like(
    image_size: int,
    dropout: float = 0.3,
    filters: tuple[int, ...] = (32, 64, 128),
    convs_per_block: int = 1,
    dense_units: int = 64,
    name: str = "cnn",
) -> keras.Model:
    """Conv-BN-ReLU blocks with max pooling, global average pooling and a small head."""
    inputs = image_input(image_size)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for width in filters:
        x = _conv_block(x, int(width), convs_per_block)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, sigmoid_head(x), name=name)
