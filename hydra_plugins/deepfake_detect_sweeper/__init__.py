"""deepfake_detect's Hydra sweeper plugin (Hydra finds plugins in ``hydra_plugins`` only)."""
