"""Training: the Hydra entry point, the Keras fit loop, callbacks, hardware choices and the
sweep callback (TensorFlow is imported only once a run starts)."""
