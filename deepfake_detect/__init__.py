"""deepfake_detect: experiment tracking and a model registry for real-vs-deepfake classifiers.

Importing the package is cheap (no TensorFlow); it registers the OmegaConf resolvers the
Hydra configs use.
"""

from deepfake_detect.config_resolvers import register_resolvers

register_resolvers()

__all__ = ["register_resolvers"]
