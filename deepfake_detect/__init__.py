"""deepfake_detect: experiment tracking and a model registry for real-vs-deepfake classifiers.

Layers, imported in one direction only:
``commands`` -> ``training`` / ``leaderboard`` / ``registry`` / ``inference`` ->
``tracking`` / ``metrics`` / ``data`` / ``models`` -> ``config``.
Importing the package is cheap (no TensorFlow, no OmegaConf): what composes or resolves a
Hydra config first calls ``config.resolvers.register_resolvers()`` (the trainer's entry point,
``reproduce``, the config checks), so commands that never read a config do not load it.
"""
