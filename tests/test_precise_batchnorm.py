"""Precise BatchNorm as one compiled pass: the same statistics as the eager reference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from deepfake_detect.training.callbacks import PreciseBatchNorm, all_layers

pytestmark = pytest.mark.training


@pytest.fixture(autouse=True)
def float32_policy():
    """Other tests in this worker may have left a mixed-precision global policy."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy(previous)


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()],
        name="backbone",
    )  # a nested model: its BatchNorm must be found too
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Dropout(0.5)(x)
    x = inner(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def layers_of(model: keras.Model, kind: type) -> list:
    return [layer for layer in all_layers(model) if isinstance(layer, kind)]


def first_layer_reference(model: keras.Model, dataset: tf.data.Dataset, batches: int) -> list:
    """The definition, in numpy: the plain average of the first BatchNorm layer's batch mean
    and (biased) variance over ``batches`` batches (its input depends on no BatchNorm state)."""
    first = layers_of(model, keras.layers.BatchNormalization)[0]
    probes = keras.Model(model.inputs, first.input)
    expected = []
    for images, _ in dataset.take(batches):
        inputs = probes(images).numpy()
        expected.append((inputs.mean(axis=(0, 1, 2)), inputs.var(axis=(0, 1, 2))))
    return [np.mean([m for m, _ in expected], axis=0), np.mean([v for _, v in expected], axis=0)]


def test_compiled_statistics_equal_the_average_of_batch_statistics():
    rng = np.random.default_rng(1)
    images = rng.normal(2.0, 3.0, (40, 8, 8, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(40))).batch(8)
    model = tiny_model()
    weights = [w.numpy().copy() for w in model.trainable_weights]
    callback = PreciseBatchNorm(dataset, 4)
    callback.set_model(model)
    callback.on_epoch_end(0)
    first = model.layers[2]
    mean, variance = first_layer_reference(model, dataset, 4)
    np.testing.assert_allclose(first.moving_mean.numpy(), mean, atol=1e-5, rtol=1e-6)
    np.testing.assert_allclose(first.moving_variance.numpy(), variance, atol=1e-5, rtol=1e-6)
    assert first.momentum == 0.9 and model.layers[3].rate == 0.5  # restored
    for before, after in zip(weights, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())  # weights untouched
    nested = model.get_layer("backbone").layers[-1]
    assert not np.allclose(nested.moving_variance.numpy(), 1.0)  # the nested layer was updated


def test_compiled_pass_matches_the_eager_running_mean_within_1e_6():
    """Against the previous eager implementation (momentum (n-1)/n per batch), on every layer,
    twice in a row (the traced function is reused and its sums start from zero)."""
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (48, 8, 8, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(48))).batch(16)
    compiled, eager = tiny_model(), tiny_model()
    callback = PreciseBatchNorm(dataset, 3)
    callback.set_model(compiled)
    for _ in range(2):
        callback.on_epoch_end(0)
    norms = layers_of(eager, keras.layers.BatchNormalization)
    drops = layers_of(eager, keras.layers.Dropout)
    for layer in drops:
        layer.rate = 0.0
    for count, (batch, _) in enumerate(dataset.take(3), start=1):
        for layer in norms:
            layer.momentum = (count - 1) / count
        eager(batch, training=True)
    got = layers_of(compiled, keras.layers.BatchNormalization)
    assert len(got) == len(norms) == 2
    for ours, reference in zip(got, norms, strict=True):
        for name in ("moving_mean", "moving_variance"):
            a, b = getattr(ours, name).numpy(), getattr(reference, name).numpy()
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(b).max()))
