"""Promotion: move a registry alias (champion) to the best comparable run (no TensorFlow)."""
