"""deepfake_detect: experiment tracking and a model registry for real-vs-deepfake classifiers.

Layers, imported in one direction only:
``commands`` -> ``training`` / ``leaderboard`` / ``registry`` / ``inference`` ->
``tracking`` / ``metrics`` / ``data`` / ``models`` -> ``config``.
Importing the package is cheap (no TensorFlow); it registers the OmegaConf resolvers the
Hydra configs use.
"""

from deepfake_detect.config.resolvers import register_resolvers

register_resolvers()

__all__ = ["register_resolvers"]
