"""``python -m deepfake_detect.train`` (console script ``deepfake-train``): the training command.

The Hydra application lives in :mod:`deepfake_detect.training.main`; this module is only its
documented, stable command name.
"""

from deepfake_detect.training.main import main

if __name__ == "__main__":
    main()
