"""Grad-CAM (Selvaraju et al. 2017) for any preset: where in an image the last convolution
saw the evidence for the model's decision (imports TensorFlow)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from deepfake_detect.models.heads import OUTPUT_NAME
from deepfake_detect.models.introspection import last_conv_layer


def _features_and_logit_model(model: keras.Model) -> keras.Model:
    """A model giving (last conv activations, the sigmoid head's input) of ``model``.

    The head's input, not the probability, is kept so the gradient of the logit does not
    vanish on saturated (very confident) scores. A convolution inside a nested backbone
    (EfficientNet, Xception) is reached by calling the backbone's own feature model and
    replaying the outer layers, which are a plain chain in every preset.
    """
    container, conv = last_conv_layer(model)
    head = next((layer for layer in model.layers if layer.name == OUTPUT_NAME), None)
    if container is model:
        before_head = head.input if head is not None else model.outputs[0]
        return keras.Model(model.inputs, [conv.output, before_head])
    inner = keras.Model(container.inputs, [conv.output, container.outputs[0]])
    inputs = keras.Input(model.input_shape[1:])
    x, features = inputs, None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer is head:
            continue
        if layer is container:
            features, x = inner(x)
        else:
            x = layer(x)
    return keras.Model(inputs, [features, x])


def grad_cam(
    model: keras.Model, images: np.ndarray, threshold: float, batch_size: int = 16
) -> np.ndarray:
    """Heatmaps in [0, 1] (N x H x W, the images' size) of the evidence for each image's
    decision at ``threshold``: the positive class where the score is above it, else the
    negative one."""
    explainer = _features_and_logit_model(model)
    head = next((layer for layer in model.layers if layer.name == OUTPUT_NAME), None)
    size = images.shape[1:3]
    maps = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(images[start : start + batch_size], tf.float32)
        with tf.GradientTape() as tape:
            features, before_head = explainer(batch, training=False)
            if head is not None:
                logit = tf.matmul(tf.cast(before_head, tf.float32), head.kernel) + head.bias
            else:  # a model without the shared head: the logit from its probability
                prob = tf.clip_by_value(tf.cast(before_head, tf.float32), 1e-7, 1 - 1e-7)
                logit = tf.math.log(prob) - tf.math.log1p(-prob)
            logit = tf.reshape(logit, [-1])
            decision = tf.where(tf.sigmoid(logit) > threshold, 1.0, -1.0)
            target = tf.reduce_sum(decision * logit)
        gradients = tape.gradient(target, features)
        weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1))
        cam = tf.image.resize(cam[..., None], size, "bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        maps.append(tf.math.divide_no_nan(cam, peak).numpy())
    return np.concatenate(maps) if maps else np.zeros((0, *size), np.float32)
