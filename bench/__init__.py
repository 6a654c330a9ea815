"""Benchmarks (`make bench`): figures, not assertions."""
