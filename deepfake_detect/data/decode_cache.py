"""Decode a split once per (root, split, image size, files) into a memory-mapped file on disk.

Images are decoded straight into ``images.npy`` through a memory map, in a canonical order
(relative path), and training reads them through the map: neither building nor training needs
the split in RAM (a 140k-image split at 256 px is 27.5 GB). The key holds each file's
relative path, size and mtime, not labels or the corrupt-file policy: unreadable files are
recorded beside the images, so strict and ``skip_corrupt`` runs and runs with either
``positive_class`` share one entry. A content hash of every file is stored too (duplicates
across splits). Locking, listing, eviction and cleanup live in :mod:`cache_store`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deepfake_detect.data import cache_store
from deepfake_detect.data.cache_store import EntryLock
from deepfake_detect.data.images import DIGEST_BYTES, read_and_decode
from deepfake_detect.data.layout import DataError, SplitFiles
from deepfake_detect.data.progress import reported_progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodedSplit:
    """A decoded split. ``images`` (uint8, N x size x size x 3, usually memory-mapped) holds
    every file of the split; ``rows`` are the usable ones with their ``labels``, ``digests``
    (content hashes) and ``paths``. ``lease`` keeps the cache entry's shared lock."""

    images: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    digests: np.ndarray
    paths: tuple[Path, ...]
    skipped: tuple[str, ...]
    from_cache: bool
    lease: EntryLock | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def usable_images(self) -> np.ndarray:
        """The usable images as one in-memory array (small splits and tests only)."""
        return np.asarray(self.images[self.rows])


@dataclass(frozen=True)
class CanonicalFiles:
    """A split's files sorted by path relative to the split folder (the cache's row order)."""

    files: SplitFiles
    rel: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray

    @classmethod
    def of(cls, files: SplitFiles) -> CanonicalFiles:
        base = files.root / files.split
        rel = [path.relative_to(base).as_posix() for path in files.paths]
        order = sorted(range(len(rel)), key=rel.__getitem__)
        return cls(
            files=files,
            rel=tuple(rel[i] for i in order),
            paths=tuple(files.paths[i] for i in order),
            labels=np.asarray([files.labels[i] for i in order], dtype=np.int32),
        )

    def key(self) -> str:
        """Hash of relative paths, sizes and mtimes (not labels: see the module doc)."""
        digest = hashlib.sha256()
        for rel, path in zip(self.rel, self.paths, strict=True):
            try:
                info = path.stat()
                size, mtime = info.st_size, info.st_mtime_ns
            except OSError:  # dangling symlink or loop: recorded as unreadable
                size, mtime = -1, -1
            digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
        return digest.hexdigest()[:16]


def _workers() -> int:
    return min(32, (os.cpu_count() or 2) * 2)


def decode_into(
    canonical: CanonicalFiles,
    images: np.ndarray,
    digests: np.ndarray,
    size: int,
    stop_at_corrupt: bool,
) -> dict[int, str]:
    """Decode every file into ``images[i]`` (a memory map) and hash it into ``digests[i]``,
    a bounded chunk at a time; return {row: error} of unreadable files. With
    ``stop_at_corrupt`` the first one raises and nothing after its chunk is decoded."""
    paths = canonical.paths
    corrupt: dict[int, str] = {}
    workers = _workers()
    chunk = workers * 4

    def one(index: int) -> str | None:
        result, digest = read_and_decode(paths[index], size)
        digests[index] = np.frombuffer(digest, dtype=np.uint8)
        if isinstance(result, str):
            return result
        images[index] = result
        return None

    what = f"decoding {canonical.files.root / canonical.files.split} at {size} px"
    with ThreadPoolExecutor(workers) as pool, reported_progress(len(paths), what) as advance:
        for start in range(0, len(paths), chunk):
            indices = range(start, min(start + chunk, len(paths)))
            for index, error in zip(indices, pool.map(one, indices), strict=True):
                if error is None:
                    continue
                if stop_at_corrupt:
                    raise DataError(_corrupt_message(paths[index], error))
                log.warning("skipping unreadable image %s (%s)", paths[index], error)
                corrupt[index] = error
            advance(len(indices))
    return corrupt


def _corrupt_message(path: Path, error: str) -> str:
    return (
        f"cannot decode image {path} ({error}); remove or replace the file, or set "
        "data.skip_corrupt=true to skip unreadable images"
    )


def _view(
    canonical: CanonicalFiles,
    images: np.ndarray,
    digests: np.ndarray,
    corrupt: dict[int, str],
    skip_corrupt: bool,
    from_cache: bool,
    lease: EntryLock | None = None,
) -> DecodedSplit:
    """The usable rows of a decoded split (strict: the first unreadable file raises)."""
    if corrupt and not skip_corrupt:
        first = min(corrupt)
        raise DataError(_corrupt_message(canonical.paths[first], corrupt[first]))
    keep = np.ones(len(canonical.paths), dtype=bool)
    keep[list(corrupt)] = False
    rows = np.flatnonzero(keep).astype(np.int64)
    return DecodedSplit(
        images=images,
        rows=rows,
        labels=canonical.labels[rows],
        digests=np.asarray(digests)[rows],
        paths=tuple(canonical.paths[i] for i in rows),
        skipped=tuple(str(canonical.paths[i]) for i in sorted(corrupt)),
        from_cache=from_cache,
        lease=lease,
    )


def decode_split(
    files: SplitFiles, size: int, skip_corrupt: bool, scratch_dir: Path | None = None
) -> DecodedSplit:
    """Decode without the cache, into an unnamed temporary file in ``scratch_dir`` (default:
    the system's temp folder) that is memory-mapped and deleted when the arrays go."""
    canonical = CanonicalFiles.of(files)
    shape = (len(canonical.paths), size, size, 3)
    with tempfile.TemporaryFile(dir=scratch_dir) as scratch:
        cache_store.reserve(
            scratch.fileno(), int(np.prod(shape)), Path(scratch_dir or tempfile.gettempdir())
        )
        images = np.memmap(scratch, dtype=np.uint8, mode="w+", shape=shape)
    digests = np.zeros((len(canonical.paths), DIGEST_BYTES), dtype=np.uint8)
    corrupt = decode_into(canonical, images, digests, size, stop_at_corrupt=not skip_corrupt)
    return _view(canonical, images, digests, corrupt, skip_corrupt, from_cache=False)


def cache_entry(cache_dir: Path, canonical: CanonicalFiles, size: int) -> Path:
    """The entry folder for this split's current files at this size."""
    files = canonical.files
    # the root and the class folders read: runs that read other class folders of the same
    # split are other entries, not stale versions of this one
    where = f"{files.root}\0{','.join(sorted(files.class_folders))}"
    root_hash = hashlib.sha256(where.encode()).hexdigest()[:10]
    name = f"{root_hash}-{files.split}-{size}px-{canonical.key()}-v{cache_store.ENTRY_FORMAT}"
    return cache_store.decoded_dir(cache_dir) / name


def _build(entry: Path, canonical: CanonicalFiles, size: int, stop_at_corrupt: bool) -> None:
    """Decode into a temp folder beside ``entry`` and rename it into place (exclusive lock
    held). A strict build stops at the first unreadable file and leaves nothing."""
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + cache_store.TMP_MARK, dir=entry.parent))
    try:
        tmp.chmod(cache_store.folder_mode(entry.parent))  # teammates can clean a killed build
        count = len(canonical.paths)
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(count, size, size, 3)
        )
        digests = np.lib.format.open_memmap(
            tmp / "digests.npy", mode="w+", dtype=np.uint8, shape=(count, DIGEST_BYTES)
        )
        for name, array in (("images.npy", images), ("digests.npy", digests)):
            fd = os.open(tmp / name, os.O_RDWR)
            try:
                cache_store.reserve(fd, array.offset + array.nbytes, entry.parent)
            finally:
                os.close(fd)
        corrupt = decode_into(canonical, images, digests, size, stop_at_corrupt)
        images.flush()
        digests.flush()
        del images, digests
        files = canonical.files
        cache_store.write_meta(
            tmp,
            {
                "root": str(files.root),
                "split": files.split,
                "size": size,
                "images": count,
                "corrupt": {canonical.rel[i]: error for i, error in corrupt.items()},
                "created": time.time(),
            },
        )
        cache_store.touch(tmp)
        cache_store.share(tmp)
        cache_store.fsync_folder(tmp)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_entry(
    entry: Path, canonical: CanonicalFiles, skip_corrupt: bool, in_memory: bool, lease: EntryLock
) -> DecodedSplit:
    try:
        meta = json.loads((entry / "meta.json").read_text())
        index = {rel: i for i, rel in enumerate(canonical.rel)}
        corrupt = {index[rel]: error for rel, error in meta["corrupt"].items()}
        mode = None if in_memory else "r"
        images = np.load(entry / "images.npy", mmap_mode=mode)
        digests = np.load(entry / "digests.npy")
        if images.shape[0] != len(canonical.rel) or digests.shape[0] != len(canonical.rel):
            raise ValueError(f"{images.shape[0]} images for {len(canonical.rel)} files")
    except (OSError, ValueError, KeyError) as error:
        raise DataError(
            f"decoded cache entry {entry} is damaged ({error}); remove it with `deepfake-detect "
            "cache clear --all` (or delete the folder) and run again"
        ) from error
    cache_store.touch(entry)
    return _view(canonical, images, digests, corrupt, skip_corrupt, True, lease)


def load_split(
    files: SplitFiles,
    size: int,
    skip_corrupt: bool,
    cache_dir: Path | None,
    in_memory: bool = False,
    max_gb: float | None = None,
) -> DecodedSplit:
    """Decoded images of a split, through the disk cache when ``cache_dir`` is set.

    The returned split holds the entry's use lock (no one removes it while it is in use);
    ``in_memory`` loads the images into RAM instead of mapping them. A missing entry is built
    once under its build lock (others wait, and are told who builds). Before a build, stale
    entries of the same split that no one uses are removed (their space is needed); after
    it, with ``max_gb``, the least recently used entries beyond that size; orphaned temp
    folders and locks at every load.
    """
    if cache_dir is None:
        return decode_split(files, size, skip_corrupt)
    canonical = CanonicalFiles.of(files)
    entry = cache_entry(cache_dir, canonical, size)
    lease = EntryLock(entry)
    built = False
    try:
        lease.acquire(shared=True)  # removers only try, never wait: this does not block
        for attempt in range(MAX_BUILDS + 1):
            if cache_store.is_complete(entry):  # and it stays: we hold its use lock
                decoded = _open_entry(entry, canonical, skip_corrupt, in_memory, lease)
                break
            if attempt == MAX_BUILDS:
                raise DataError(f"decoded cache entry {entry} could not be built; try again")
            build = cache_store.wait_to_build(entry)
            try:
                if not cache_store.is_complete(entry):  # no one built it meanwhile
                    cache_store.discard(entry)  # a half-removed entry, if any
                    _remove_stale(entry)
                    cache_store.remove_build_leftovers(entry)
                    _build(entry, canonical, size, stop_at_corrupt=not skip_corrupt)
                    built = True
            finally:
                build.close()
    except BaseException as error:
        lease.close()
        cache_store.clean_orphans(Path(cache_dir))  # a failed build leaves nothing
        if isinstance(error, OSError):
            raise cache_store.unusable_cache(entry.parent, error) from error
        raise
    if in_memory:
        lease.close()
    cache_store.clean_orphans(Path(cache_dir))
    if built and max_gb is not None:
        cache_store.evict(Path(cache_dir), max_gb * 1e9, keep=entry)
    return replace(decoded, from_cache=not built)


MAX_BUILDS = 2


def _remove_stale(entry: Path) -> None:
    """Entries of the same root, class folders, split and size with other files: stale."""
    prefix = entry.name.rsplit("-", 2)[0] + "-"
    for sibling in entry.parent.glob(prefix + "*"):
        if sibling != entry and sibling.is_dir() and cache_store.TMP_MARK not in sibling.name:
            cache_store.remove_entry(sibling, "stale: the files changed")
