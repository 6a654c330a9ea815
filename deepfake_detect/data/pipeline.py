"""tf.data pipelines over decoded splits: seeded shuffle, parallel batch gather, prefetch."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from deepfake_detect.data.decode_cache import DecodedSplit
from deepfake_detect.data.perturbations import Perturbation


def _gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur of float (B, H, W, 3) batches, edges reflected."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    rows = tf.constant(np.tile(taps[:, None, None, None], (1, 1, 3, 1)))  # (k, 1, 3, 1)
    cols = tf.transpose(rows, (1, 0, 2, 3))
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, cols, [1, 1, 1, 1], "VALID")


def perturb(images: tf.Tensor, perturbation: Perturbation) -> tf.Tensor:
    """A uint8 (B, H, W, 3) batch re-encoded, rescaled or blurred (uint8 again, rounded)."""
    if perturbation.kind == "jpeg":
        quality = int(perturbation.level)
        return tf.map_fn(
            lambda image: tf.io.decode_jpeg(tf.io.encode_jpeg(image, quality=quality), 3),
            images,
            fn_output_signature=tf.TensorSpec(images.shape[1:], tf.uint8),
        )
    values = tf.cast(images, tf.float32)
    size = images.shape[1]
    if perturbation.kind == "scale":
        small = max(1, round(size * perturbation.level))
        values = tf.image.resize(values, (small, small), "bilinear", antialias=True)
        values = tf.image.resize(values, (size, size), "bilinear")
    else:
        values = _gaussian_blur(values, perturbation.level)
    return tf.cast(tf.clip_by_value(tf.round(values), 0, 255), tf.uint8)


def make_dataset(
    decoded: DecodedSplit,
    batch_size: int,
    shuffle: bool,
    seed: int,
    parallel_calls: int | None = None,
    epochs: range | None = None,
    perturbation: Perturbation | None = None,
) -> tf.data.Dataset:
    """Batches of ``(float32 images 0..255, float32 labels (B, 1))``.

    Indices are shuffled and batched first; each batch is then gathered from the (possibly
    memory-mapped) uint8 array in parallel, so a large cache never has to fit in RAM and the
    pipeline stays ahead of the model. With ``shuffle`` and ``epochs`` the dataset holds those
    epochs back to back (``fit`` needs ``steps_per_epoch=steps_per_epoch(...)``), and the order
    of epoch ``e`` depends only on ``(seed, e)``: a run resumed at epoch 3 sees what an
    uninterrupted one would. Without ``epochs`` a shuffled dataset reshuffles (seeded) on every
    pass. ``perturbation`` (evaluation) is applied to each uint8 batch before the cast.
    """
    images, rows = decoded.images, decoded.rows
    labels = decoded.labels.astype(np.float32).reshape(-1, 1)
    size = images.shape[1]

    def gather(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.sort(index)  # rows are ascending: sequential reads from the memory map
        return np.asarray(images[rows[index]]), labels[index]

    def to_tensors(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch_images, batch_labels = tf.numpy_function(
            gather, [index], (tf.uint8, tf.float32), stateful=False
        )
        batch_images.set_shape([None, size, size, 3])
        batch_labels.set_shape([None, 1])
        if perturbation is not None:
            batch_images = perturb(batch_images, perturbation)
        return tf.cast(batch_images, tf.float32), batch_labels

    count = len(labels)
    if shuffle and epochs is not None:

        def epoch_order(epoch: np.int64) -> np.ndarray:
            return np.random.default_rng([seed, int(epoch)]).permutation(count).astype(np.int64)

        def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
            order = tf.numpy_function(epoch_order, [epoch], tf.int64, stateful=False)
            order.set_shape([count])
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        dataset = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(epoch_batches)
    else:
        dataset = tf.data.Dataset.range(count)
        if shuffle:
            dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        to_tensors,
        num_parallel_calls=parallel_calls or tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(decoded: DecodedSplit, batch_size: int) -> int:
    """Batches in one pass over ``decoded`` (the last one may be partial)."""
    return -(-len(decoded) // batch_size)
