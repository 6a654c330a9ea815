"""MesoNet (Afchar et al. 2018, "MesoNet: a Compact Facial Video Forgery Detection Network"):
``meso4`` and ``mesoinception4``, after the authors' reference Keras code.

Both take ``image_size`` and ``dropout`` like every builder, expect float inputs in 0..255
(scaled to 0..1 in the model) and end in the shared float32 sigmoid.
"""

from __future__ import annotations

import keras
from keras import layers

from deepfake_detect.models.heads import image_input, require_image_size, sigmoid_head

# The four poolings stride 2 * 2 * 2 * 4 = 32: below 32 px the last feature map is
# made of padding only.
MIN_IMAGE_SIZE = 32


def _conv_bn_pool(x: keras.KerasTensor, filters: int, kernel: int, pool: int) -> keras.KerasTensor:
    x = layers.Conv2D(filters, kernel, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    return layers.MaxPooling2D(pool, padding="same")(x)


def _inception(x: keras.KerasTensor, filters: tuple[int, int, int, int]) -> keras.KerasTensor:
    """Four branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 dilation 2; 1x1 -> 3x3
    dilation 3, with ``filters`` channels each."""
    a, b, c, d = filters
    x1 = layers.Conv2D(a, 1, padding="same", activation="relu")(x)
    branches = [x1]
    for width, dilation in ((b, 1), (c, 2), (d, 3)):
        y = layers.Conv2D(width, 1, padding="same", activation="relu")(x)
        y = layers.Conv2D(width, 3, dilation_rate=dilation, padding="same", activation="relu")(y)
        branches.append(y)
    return layers.Concatenate(axis=-1)(branches)


def _meso_head(x: keras.KerasTensor, dropout: float) -> keras.KerasTensor:
    """Flatten, Dropout, Dense 16 leaky ReLU, Dropout, float32 sigmoid."""
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(16)(x)
    x = layers.LeakyReLU(negative_slope=0.1)(x)
    x = layers.Dropout(dropout)(x)
    return sigmoid_head(x)


def build_meso4(image_size: int, dropout: float = 0.5, name: str = "meso4") -> keras.Model:
    """Meso-4: conv 8 3x3, 8 5x5, 16 5x5, 16 5x5 (ReLU, BatchNorm, max pool 2, 2, 2, 4)."""
    require_image_size(image_size, MIN_IMAGE_SIZE, name)
    inputs = image_input(image_size)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters, kernel, pool in ((8, 3, 2), (8, 5, 2), (16, 5, 2), (16, 5, 4)):
        x = _conv_bn_pool(x, filters, kernel, pool)
    return keras.Model(inputs, _meso_head(x, dropout), name=name)


def build_mesoinception4(
    image_size: int, dropout: float = 0.5, name: str = "mesoinception4"
) -> keras.Model:
    """MesoInception-4: inception (1, 4, 4, 2) and (2, 4, 4, 2), each with BatchNorm and max
    pool 2, then conv 16 5x5 blocks with max pool 2 and 4."""
    require_image_size(image_size, MIN_IMAGE_SIZE, name)
    inputs = image_input(image_size)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in ((1, 4, 4, 2), (2, 4, 4, 2)):
        x = _inception(x, filters)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    for pool in (2, 4):
        x = _conv_bn_pool(x, 16, 5, pool)
    return keras.Model(inputs, _meso_head(x, dropout), name=name)
