"""Image folders: layout checks, decoding with an on-disk cache, and tf.data pipelines."""
