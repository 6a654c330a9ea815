"""The packaged Hydra configs (a package so Hydra finds them as ``pkg://deepfake_detect.conf``)."""
