"""MLflow plumbing: the store and experiments, run lifecycle, vocabulary, model logging and
registered-model lookups (no TensorFlow, except model logging)."""
