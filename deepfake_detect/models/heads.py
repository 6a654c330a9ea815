"""The input and output every model shares: 0..255 float images in, a float32 sigmoid out."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

OUTPUT_NAME = "prob_positive"


def image_input(image_size: int) -> keras.KerasTensor:
    """``(size, size, 3)`` float images in 0..255."""
    return keras.Input(shape=(image_size, image_size, 3), name="image")


def predict_scores(model: keras.Model, inputs) -> np.ndarray:
    """Probabilities of the positive class, float32 (N,), for a dataset or an array."""
    return np.asarray(model.predict(inputs, verbose=0), dtype=np.float32).ravel()


def sigmoid_head(x: keras.KerasTensor) -> keras.KerasTensor:
    """Probability of the positive class, float32 even under mixed precision."""
    return layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_NAME)(x)
