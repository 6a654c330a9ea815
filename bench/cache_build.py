"""Build one decoded-cache entry in this process and report its speed and memory.

``python -m bench.cache_build DATA_ROOT CACHE_DIR SIZE`` prints one JSON line: images,
seconds, images/s, and the anonymous memory (RssAnon: not the file-backed pages of the memory
map) before and at its peak while building and then reading every image back through the
training pipeline (shuffled tf.data batches, one epoch). ``make bench`` runs it for two split
sizes; a test runs it small.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

SAMPLE_EVERY_S = 0.002


def rss_anon_mb() -> float:
    """This process's anonymous resident memory in MB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)) / 1024


def measure(data_root: Path, cache_dir: Path, size: int, batch: int = 64) -> dict[str, float]:
    """Build the Train split's entry at ``size`` px, then read it all back in ``batch``es."""
    from deepfake_detect.data.decode_cache import load_split
    from deepfake_detect.data.layout import scan_split
    from deepfake_detect.data.pipeline import make_dataset  # TensorFlow: before the baseline

    files = scan_split(data_root, "Train", ["Real", "Fake"])
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon_mb())
            time.sleep(SAMPLE_EVERY_S)

    base = rss_anon_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    split = load_split(files, size, False, cache_dir)
    seconds = time.perf_counter() - start
    for images, _ in make_dataset(split, batch, shuffle=True, seed=0, epochs=range(1)):
        images.numpy()  # one training epoch's reads through the memory map
    done.set()
    sampler.join()
    return {
        "images": len(split),
        "from_cache": split.from_cache,
        "build_s": seconds,
        "images_per_s": len(split) / seconds,
        "base_anon_mb": base,
        "peak_anon_mb": max(peak[0], rss_anon_mb()),
    }


if __name__ == "__main__":
    root, cache, px, *batch = sys.argv[1:]
    print(json.dumps(measure(Path(root), Path(cache), int(px), *map(int, batch))))
