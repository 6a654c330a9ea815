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
