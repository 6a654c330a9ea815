"""Thin argparse adapters of ``deepfake-detect``; the work is done in the feature packages."""
