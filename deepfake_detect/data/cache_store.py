"""The decoded-image cache on disk: entry folders, their locks, listing, eviction, cleanup.

Layout under ``CACHE_DIR/decoded/``: one folder per entry (``meta.json``, ``images.npy``,
``digests.npy``, ``last_used``), a ``<entry>.lock`` file beside it, and ``<entry>.tmp-*``
folders while an entry is being built. A process holds an entry's lock *shared* for as long
as it reads the entry (a training run: its whole life) and *exclusive* to build or remove it,
so an entry in use is never removed, and a build that was killed leaves a temp folder whose
lock anyone can take: the next build or ``cache clear`` removes it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from deepfake_detect.data.layout import DataError

log = logging.getLogger(__name__)

ENTRY_FORMAT = 2
TMP_MARK = ".tmp-"
LOCK_SUFFIX = ".lock"
ENTRY_MODE = 0o750  # entries are group-readable (not world-readable: faces are personal data)
FILE_MODE = 0o640
LOCK_MODE = 0o660  # group members may lock (read or build) entries too
FOLDER_MODE = 0o2750  # folders we create: group-readable, new files keep the folder's group


def decoded_dir(cache_dir: Path) -> Path:
    """The folder that holds the entries of ``cache_dir``."""
    return Path(cache_dir) / "decoded"


def unusable_cache(folder: Path, error: OSError) -> DataError:
    """The one-line error for a cache folder this process cannot use."""
    why = error.strerror or type(error).__name__
    return DataError(
        f"cannot use the decoded-image cache in {folder} ({why}); set data.cache_dir (or "
        "--cache-dir) to a folder you can write, or data.cache=none (a team cache needs "
        "`chgrp TEAM DIR && chmod g+ws DIR`)"
    )


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and parents) group-readable and group-inheriting; existing folders
    keep the mode their owner gave them."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    folder.mkdir(parents=True, exist_ok=True)
    for path in missing:
        try:
            path.chmod(FOLDER_MODE | (0o777 & ~_umask()))
        except OSError:
            pass


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class EntryLock:
    """``flock`` on ``<entry>.lock``: shared to read an entry, exclusive to build or remove it.

    Converting between shared and exclusive is not atomic (flock releases first), so callers
    re-check the entry after every acquire. A lock file may be deleted by whoever holds it
    exclusively: every acquire checks that the path still names the file it locked, and
    locks the new file otherwise. Released on :meth:`close` or when the process dies.
    """

    def __init__(self, entry: Path) -> None:
        self.path = entry.with_name(entry.name + LOCK_SUFFIX)
        self.exclusive = False
        self._fd: int | None = None
        try:
            make_folder(self.path.parent)
            self._fd = self._open()
        except OSError as error:
            raise unusable_cache(self.path.parent, error) from error

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, LOCK_MODE)
        except PermissionError:  # a read-only shared cache: shared locks still work
            return os.open(self.path, os.O_RDONLY)
        try:
            os.fchmod(fd, LOCK_MODE)
        except PermissionError:  # another user's lock file: it keeps their mode
            pass
        return fd

    def _names_our_file(self) -> bool:
        try:
            on_disk, ours = os.stat(self.path), os.fstat(self._fd)
        except FileNotFoundError:
            return False
        return (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino)

    def acquire(self, shared: bool, blocking: bool = True) -> bool:
        """Take (or convert to) the lock; False when ``blocking=False`` and it is held."""
        if self._fd is None:
            raise RuntimeError(f"lock {self.path} is closed")
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        while True:
            try:
                fcntl.flock(self._fd, mode)
            except BlockingIOError:
                return False
            if self._names_our_file():
                self.exclusive = not shared
                return True
            os.close(self._fd)  # deleted by its last holder: lock the file there now
            self._fd = self._open()

    def remove_file(self) -> None:
        """Delete the lock file (exclusive holders only: an entry removed or never built)."""
        if not self.exclusive:
            raise RuntimeError(f"lock {self.path} is not held exclusively")
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.exclusive = False

    def __del__(self) -> None:
        self.close()


def is_complete(entry: Path) -> bool:
    """An entry is usable once its ``meta.json`` exists (written last, then renamed in)."""
    return (entry / "meta.json").is_file()


def touch(entry: Path) -> None:
    """Record a use (least-recently-used eviction); silent on a read-only shared cache."""
    stamp = entry / "last_used"
    now = time.time_ns()  # exact: the kernel's own file times tick in milliseconds
    try:
        stamp.touch()
        os.utime(stamp, ns=(now, now))
    except OSError:
        pass


def last_used(entry: Path) -> float:
    """When the entry was last read (or built)."""
    for name in ("last_used", "meta.json"):
        try:
            return (entry / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def folder_bytes(folder: Path) -> int:
    """Bytes of the files directly inside ``folder``."""
    total = 0
    for child in folder.iterdir():
        try:
            total += child.stat().st_size
        except OSError:
            pass
    return total


@dataclass(frozen=True)
class EntryInfo:
    """One entry as ``cache list`` shows it."""

    path: Path
    root: str
    split: str
    size: int
    images: int
    corrupt: int
    bytes: int
    last_used: float


def read_info(entry: Path) -> EntryInfo | None:
    """The entry's description, or None when it is incomplete or not ours."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return EntryInfo(
        path=entry,
        root=str(meta.get("root", "?")),
        split=str(meta.get("split", "?")),
        size=int(meta.get("size", 0)),
        images=int(meta.get("images", 0)),
        corrupt=len(meta.get("corrupt", {})),
        bytes=folder_bytes(entry),
        last_used=last_used(entry),
    )


def list_entries(cache_dir: Path) -> list[EntryInfo]:
    """Complete entries of the cache, least recently used first."""
    folder = decoded_dir(cache_dir)
    if not folder.is_dir():
        return []
    found = [
        info
        for entry in folder.iterdir()
        if entry.is_dir() and TMP_MARK not in entry.name
        for info in [read_info(entry)]
        if info is not None
    ]
    return sorted(found, key=lambda info: info.last_used)


def in_use(entry: Path) -> bool:
    """Whether a process holds the entry's lock (reading or building it)."""
    lock = EntryLock(entry)
    try:
        return not lock.acquire(shared=False, blocking=False)
    finally:
        lock.close()


def remove_entry(entry: Path, why: str) -> bool:
    """Remove an entry unless a process holds its lock (reading or building it); False when
    it is in use or could not be removed (another user's entry)."""
    lock = EntryLock(entry)
    try:
        if not lock.acquire(shared=False, blocking=False):
            log.info("cache entry %s is in use; not removed (%s)", entry.name, why)
            return False
        failures: list[str] = []
        shutil.rmtree(entry, onerror=lambda _f, path, info: failures.append(f"{path}: {info[1]}"))
        if entry.exists():
            log.warning("could not remove cache entry %s (%s): %s", entry.name, why, failures[:1])
            return False
        lock.remove_file()
        log.info("removed cache entry %s (%s)", entry.name, why)
        return True
    finally:
        lock.close()


def remove_build_leftovers(entry: Path) -> None:
    """Temp folders of earlier builds of ``entry``; call with its exclusive lock held."""
    for tmp in entry.parent.glob(entry.name + TMP_MARK + "*"):
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("removed the leftovers of an interrupted cache build: %s", tmp.name)


def _remove_orphan_lock(entry: Path) -> bool:
    """Delete the lock file of an entry that does not exist and is not being built."""
    lock = EntryLock(entry)
    try:
        if not lock.acquire(shared=False, blocking=False):
            return False
        if entry.exists() or list(entry.parent.glob(entry.name + TMP_MARK + "*")):
            return False  # checked under the lock: it was built (or is being) meanwhile
        lock.remove_file()
        return True
    finally:
        lock.close()


def clean_orphans(cache_dir: Path) -> int:
    """Remove temp folders of killed builds, lock files left with no entry and entries of an
    older format; return how many were removed. Anything whose lock is held (a build in
    progress, a reader) is left alone."""
    folder = decoded_dir(cache_dir)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if TMP_MARK in path.name:
            entry = folder / path.name.split(TMP_MARK)[0]
            lock = EntryLock(entry)
            try:
                if lock.acquire(shared=False, blocking=False):
                    remove_build_leftovers(entry)
                    removed += 1
                    if not entry.exists():
                        lock.remove_file()
            finally:
                lock.close()
        elif path.name.endswith(LOCK_SUFFIX):
            entry = path.with_name(path.name.removesuffix(LOCK_SUFFIX))
            if not entry.exists() and _remove_orphan_lock(entry):
                removed += 1
        elif path.is_dir() and not path.name.endswith(f"-v{ENTRY_FORMAT}"):
            removed += remove_entry(path, "written by an older version")
    return removed


def evict(cache_dir: Path, max_bytes: float, keep: Path) -> list[Path]:
    """Remove least recently used entries (never ``keep``, never one in use) until the cache
    holds at most ``max_bytes``; return the removed entries."""
    entries = list_entries(cache_dir)
    total = sum(info.bytes for info in entries)
    removed = []
    for info in entries:
        if total <= max_bytes:
            break
        if info.path == keep:
            continue
        if remove_entry(info.path, f"data.cache_max_gb: cache over {max_bytes / 1e9:.3g} GB"):
            total -= info.bytes
            removed.append(info.path)
    if total > max_bytes:
        log.warning(
            "decoded cache %s holds %.2f GB, over data.cache_max_gb=%.3g: the rest is in use "
            "or is the entry just built; raise data.cache_max_gb or free space with "
            "`deepfake-detect cache clear`",
            decoded_dir(cache_dir),
            total / 1e9,
            max_bytes / 1e9,
        )
    return removed


def clear(cache_dir: Path, older_than_days: float | None) -> tuple[list[Path], list[Path]]:
    """Remove every entry (or those unused for ``older_than_days``) and the orphans; return
    (removed, kept because in use)."""
    clean_orphans(cache_dir)
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed, in_use = [], []
    for info in list_entries(cache_dir):
        if cutoff is not None and info.last_used >= cutoff:
            continue
        (removed if remove_entry(info.path, "cache clear") else in_use).append(info.path)
    return removed, in_use


def write_meta(folder: Path, meta: dict) -> None:
    """``meta.json``, written last: its presence marks the entry complete."""
    (folder / "meta.json").write_text(json.dumps({"format": ENTRY_FORMAT, **meta}))


def share(folder: Path) -> None:
    """Make a built entry group-readable (not world-readable), whatever the umask."""
    for child in folder.iterdir():
        child.chmod(FILE_MODE)
    folder.chmod(ENTRY_MODE)


def reserve(fd: int, size: int, where: Path) -> None:
    """Allocate ``size`` bytes for the open file ``fd`` in folder ``where`` now: a memory map
    over a sparse file that hits a full disk kills the process with SIGBUS, so running out of
    space must happen here, as one clear error."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        free = shutil.disk_usage(where).free
        raise DataError(
            f"not enough disk space for decoded images in {where} ({error.strerror}: "
            f"{size / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free); free space (`deepfake-"
            "detect cache clear`), set data.cache_dir to a larger disk ($TMPDIR with "
            "data.cache=none), or lower data.image_size"
        ) from error


def fsync_folder(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (before the rename)."""
    for child in folder.iterdir():
        fd = os.open(child, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
