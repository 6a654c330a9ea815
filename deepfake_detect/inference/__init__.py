"""Use logged or registered models: load by URI, evaluate a split, predict images."""
