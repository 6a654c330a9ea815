"""The input and output every model shares: 0..255 float images in, a float32 sigmoid out."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers

OUTPUT_NAME = "prob_positive"


def image_input(image_size: int) -> keras.KerasTensor:
    """``(size, size, 3)`` float images in 0..255."""
    return keras.Input(shape=(image_size, image_size, 3), name="image")


class PredictProgress(keras.callbacks.Callback):
    """Calls ``advance(n)`` with the number of images of every predicted batch."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        super().__init__()
        self.advance = advance

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        outputs = keras.tree.flatten((logs or {}).get("outputs", []))
        if outputs:
            self.advance(int(outputs[0].shape[0]))


def predict_scores(
    model: keras.Model, inputs, advance: Callable[[int], None] | None = None
) -> np.ndarray:
    """Probabilities of the positive class, float32 (N,), for a dataset or an array;
    ``advance(n)`` is told of every batch (progress)."""
    callbacks = [PredictProgress(advance)] if advance else None
    return np.asarray(
        model.predict(inputs, verbose=0, callbacks=callbacks), dtype=np.float32
    ).ravel()


def sigmoid_head(x: keras.KerasTensor) -> keras.KerasTensor:
    """Probability of the positive class, float32 even under mixed precision."""
    return layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_NAME)(x)


def require_image_size(image_size: int, minimum: int, model: str) -> None:
    """Reject an ``image_size`` below what ``model``'s topology needs, naming the config key."""
    if int(image_size) < minimum:
        raise ValueError(
            f"data.image_size={image_size!r} is too small for model {model!r}: "
            f"it needs at least {minimum} px"
        )


def dense_head(x: keras.KerasTensor, dropout: float, dense_units: int) -> keras.KerasTensor:
    """The backbone presets' head: Dropout, Dense ReLU, Dropout, float32 sigmoid."""
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return sigmoid_head(x)


def apply_backbone(
    backbone: keras.Model, inputs: keras.KerasTensor, freeze: bool
) -> keras.KerasTensor:
    """``backbone`` applied to ``inputs``; frozen means not trainable and BatchNorm in
    inference mode (the usual fine-tuning recipe)."""
    backbone.trainable = not freeze
    return backbone(inputs, training=False if freeze else None)
