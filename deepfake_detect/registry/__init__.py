"""MLflow Model Registry workflow: register run models, move aliases (no TensorFlow)."""
