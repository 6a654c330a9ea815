"""Decode, resize and cache a split once per (data fingerprint, image size) on disk.

Sweep trials and later sweeps reuse the same uint8 array (memory-mapped), so no trial
re-decodes the JPEGs. Entries are built under a file lock (two workers starting at once
build it once), written to a temp folder and renamed into place, and keyed by a fingerprint
that includes file sizes and mtimes, so changed data gets a fresh entry (the stale one is
removed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from deepfake_detect.data.images import try_load_image
from deepfake_detect.data.layout import DataError, SplitFiles, fingerprint

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


@dataclass(frozen=True)
class DecodedSplit:
    """A decoded split: ``images`` is uint8 (N, size, size, 3), ``labels`` int (N,)."""

    images: np.ndarray
    labels: np.ndarray
    skipped: tuple[str, ...]
    from_cache: bool


PROGRESS_EVERY_S = 30.0  # log-line interval when stderr is not a terminal (SLURM logs, CI)


@contextmanager
def reported_progress(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """``update(n)`` for ``n`` more images: a tqdm bar (count, rate, ETA) on a terminal,
    else a log line every PROGRESS_EVERY_S seconds and at the end."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=what, unit="img", file=sys.stderr, leave=False) as bar:
            yield bar.update
        return
    start = last = time.monotonic()
    done = 0

    def update(count: int) -> None:
        nonlocal done, last
        done += count
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S or done == total:
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d images, %.0f img/s, ETA %.0f s", what, done, total, rate, eta)
            last = now

    yield update


def decode_split(
    files: SplitFiles, size: int, skip_corrupt: bool, workers: int | None = None
) -> DecodedSplit:
    """Decode every file in parallel threads, with progress; a corrupt file stops at once
    (strict: the images still queued are not decoded) or is skipped and listed."""
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    keep = np.ones(len(files), dtype=bool)
    skipped: list[str] = []
    what = f"decoding {files.root / files.split} at {size} px"
    with (
        ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 2) * 2)) as pool,
        reported_progress(len(files), what) as advance,
    ):
        results = pool.map(lambda p: try_load_image(p, size), files.paths)
        for index, (path, result) in enumerate(zip(files.paths, results, strict=True)):
            advance(1)
            if isinstance(result, str):
                if not skip_corrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise DataError(
                        f"cannot decode image {path} ({result}); remove or replace the file, "
                        "or set data.skip_corrupt=true to skip unreadable images"
                    )
                log.warning("skipping unreadable image %s (%s)", path, result)
                skipped.append(str(path))
                keep[index] = False
            else:
                images[index] = result
    labels = np.asarray(files.labels, dtype=np.int32)
    if skipped:
        images, labels = images[keep], labels[keep]
    return DecodedSplit(images=images, labels=labels, skipped=tuple(skipped), from_cache=False)


def _entry_prefix(files: SplitFiles, size: int) -> str:
    root_hash = hashlib.sha256(str(files.root).encode()).hexdigest()[:10]
    return f"{root_hash}-{files.split}-{size}px-"


def cache_entry(cache_dir: Path, files: SplitFiles, size: int, skip_corrupt: bool) -> Path:
    """The cache folder for this split's current contents at this size."""
    key = fingerprint([files], with_mtime=True)
    flag = "skip" if skip_corrupt else "strict"
    return cache_dir / "decoded" / f"{_entry_prefix(files, size)}{key}-{flag}-v{CACHE_FORMAT}"


def _read_entry(entry: Path, in_memory: bool) -> DecodedSplit:
    meta = json.loads((entry / "meta.json").read_text())
    mode = None if in_memory else "r"
    return DecodedSplit(
        images=np.load(entry / "images.npy", mmap_mode=mode),
        labels=np.load(entry / "labels.npy"),
        skipped=tuple(meta["skipped"]),
        from_cache=True,
    )


def _write_entry(entry: Path, decoded: DecodedSplit) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".tmp-", dir=entry.parent))
    try:
        np.save(tmp / "images.npy", decoded.images)
        np.save(tmp / "labels.npy", decoded.labels)
        meta = {"n": int(len(decoded.labels)), "skipped": list(decoded.skipped)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale(entry: Path, prefix: str) -> None:
    for sibling in entry.parent.glob(prefix + "*"):
        if sibling != entry and sibling.is_dir() and ".tmp-" not in sibling.name:
            shutil.rmtree(sibling, ignore_errors=True)
            log.info("removed stale decoded cache %s", sibling)


def load_split(
    files: SplitFiles,
    size: int,
    skip_corrupt: bool,
    cache_dir: Path | None,
    in_memory: bool = False,
) -> DecodedSplit:
    """Decoded images of a split, via the disk cache when ``cache_dir`` is set."""
    if cache_dir is None:
        return decode_split(files, size, skip_corrupt)
    entry = cache_entry(cache_dir, files, size, skip_corrupt)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if (entry / "meta.json").is_file():
            return _read_entry(entry, in_memory)
        decoded = decode_split(files, size, skip_corrupt)
        _write_entry(entry, decoded)
        _remove_stale(entry, _entry_prefix(files, size))
    return decoded
