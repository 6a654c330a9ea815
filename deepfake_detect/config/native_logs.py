"""Quiet start-up: TensorFlow's C++ libraries print absl/CUDA/oneDNN banners straight to file
descriptor 2 while they load (``TF_CPP_MIN_LOG_LEVEL`` does not reach all of them), so the
import and the first device listing run with fd 2 captured, and only lines that are not one
of those banners are written back."""

from __future__ import annotations

import os
import re
import sys
import tempfile

VERBOSE_VARIABLE = "DEEPFAKE_DETECT_VERBOSE"  # 1: as verbose=true (`deepfake-detect --verbose`)

# start-up lines of TensorFlow's native libraries on a machine without (or with) a GPU
START_UP_NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cudart_stub|cuda_platform|cuInit"
    r"|cpu_feature_guard|To enable the following instructions|rebuild TensorFlow with"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer|TF-TRT Warning"
    r"|Could not find cuda drivers|cuda_executor|gpu_device\.cc.*Skipping registering"
)


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and list its devices, dropping the native start-up banners unless
    ``verbose`` (or ``$DEEPFAKE_DETECT_VERBOSE=1``); everything else they print (errors
    included) still reaches stderr."""
    verbose = verbose or os.environ.get(VERBOSE_VARIABLE) == "1"
    if verbose or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [line for line in text.splitlines(True) if not START_UP_NOISE.search(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
