"""tf.data pipelines over decoded splits: seeded shuffle, parallel batch gather, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from deepfake_detect.data.decode_cache import DecodedSplit


def make_dataset(
    decoded: DecodedSplit,
    batch_size: int,
    shuffle: bool,
    seed: int,
    parallel_calls: int | None = None,
    epochs: range | None = None,
) -> tf.data.Dataset:
    """Batches of ``(float32 images 0..255, float32 labels (B, 1))``.

    Indices are shuffled and batched first; each batch is then gathered from the (possibly
    memory-mapped) uint8 array in parallel, so a large cache never has to fit in RAM and the
    pipeline stays ahead of the model. With ``shuffle`` and ``epochs`` the dataset holds those
    epochs back to back (``fit`` needs ``steps_per_epoch=steps_per_epoch(...)``), and the order
    of epoch ``e`` depends only on ``(seed, e)``: a run resumed at epoch 3 sees what an
    uninterrupted one would. Without ``epochs`` a shuffled dataset reshuffles (seeded) on every
    pass.
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
