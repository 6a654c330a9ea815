"""The decoded-image cache on disk: entry folders, their locks, listing, eviction, cleanup.

Layout under ``CACHE_DIR/decoded/``: one folder per entry (``meta.json``, ``images.npy``,
``digests.npy``, ``last_used``) and two lock files beside it:

- ``<entry>.lock``, the *use* lock: held shared by every process that reads the entry (a
  training run: its whole life), taken exclusive (never waiting) only to remove the entry, so
  an entry in use is never removed;
- ``<entry>.build``, the *build* lock: held exclusive while the entry is built in a
  ``<entry>.tmp-*`` folder (it names the builder), so one process builds and the others wait;
  a build that was killed leaves a temp folder whose build lock anyone can take: the next load,
  ``cache list`` or ``cache clear`` removes it.

Building never waits for readers (a reader of a deleted entry keeps its memory map, so a new
entry can be built beside it), and no lock is ever converted between shared and exclusive.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from deepfake_detect.data.layout import DataError

log = logging.getLogger(__name__)

ENTRY_FORMAT = 2
TMP_MARK = ".tmp-"
USE_SUFFIX = ".lock"
BUILD_SUFFIX = ".build"
ENTRY_NAME = re.compile(r"^[0-9a-f]{10}-.+-\d+px-[0-9a-f]{16}(-(strict|skip))?-v(?P<version>\d+)$")
WAIT_REPORT_EVERY_S = 60.0
FILES = ("meta.json", "images.npy", "digests.npy")  # a complete entry has all three


def decoded_dir(cache_dir: Path) -> Path:
    """The folder that holds the entries of ``cache_dir``."""
    return Path(cache_dir) / "decoded"


def unusable_cache(folder: Path, error: OSError) -> DataError:
    """The one-line error for a cache folder this process cannot use."""
    why = error.strerror or type(error).__name__
    return DataError(
        f"cannot use the decoded-image cache in {folder} ({why}); set data.cache_dir (or "
        "--cache-dir) to a folder you can write, or data.cache=none (a team cache: see the "
        "README, `chgrp -R TEAM CACHE_DIR && chmod -R g+rwXs CACHE_DIR`)"
    )


def _group_bits(folder: Path) -> int:
    """The group-write and setgid bits of ``folder`` (a team cache has them)."""
    try:
        return folder.stat().st_mode & 0o2020
    except OSError:
        return 0


def folder_mode(parent: Path) -> int:
    """Mode of a folder we create in ``parent``: rwx for us, r-x for the group (plus the
    parent's group-write and setgid), nothing for others: faces are personal data."""
    return 0o750 | _group_bits(parent)


def file_mode(folder: Path) -> int:
    """Mode of a file we create in ``folder``: rw for us, r for the group (plus group write
    in a group-writable folder), nothing for others."""
    return 0o640 | (0o020 if _group_bits(folder) & 0o020 else 0)


def make_folder(folder: Path) -> None:
    """Create ``folder`` and missing parents with :func:`folder_mode`; existing folders keep
    the mode their owner gave them."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        try:
            path.chmod(folder_mode(path.parent))
        except OSError:
            pass


class EntryLock:
    """``flock`` on one of an entry's lock files (``suffix``: the use or the build lock).

    A lock file may be deleted by whoever holds it exclusively: every acquire checks that the
    path still names the file it locked, and locks the new file otherwise.
    """

    def __init__(self, entry: Path, suffix: str = USE_SUFFIX) -> None:
        self.path = entry.with_name(entry.name + suffix)
        self.exclusive = False
        self._fd: int | None = None
        try:
            make_folder(self.path.parent)
            self._fd = self._open()
        except OSError as error:
            raise unusable_cache(self.path.parent, error) from error

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o660)
        except PermissionError:  # a read-only shared cache: shared locks still work
            return os.open(self.path, os.O_RDONLY)
        try:
            os.fchmod(fd, file_mode(self.path.parent) | 0o020)  # teammates lock it too
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
        """Take the lock; False when ``blocking=False`` and it is held."""
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

    def write_holder(self) -> None:
        """Record ``host:pid`` in the (exclusively held) lock file, for those who wait."""
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{socket.gethostname()}:{os.getpid()}".encode(), 0)
        except OSError:
            pass

    def holder(self) -> str:
        """Who wrote :meth:`write_holder` last (``another process`` if unknown)."""
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"

    def remove_file(self) -> None:
        """Delete the lock file (exclusive holders only), if it is still ours."""
        if not self.exclusive:
            raise RuntimeError(f"lock {self.path} is not held exclusively")
        if self._names_our_file():
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # a read-only shared cache: the owner cleans it
                pass

    def close(self) -> None:
        """Release the lock."""
        self.exclusive = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


def wait_to_build(entry: Path) -> EntryLock:
    """The entry's build lock, held exclusively; while another process builds, say who and
    keep saying it every WAIT_REPORT_EVERY_S seconds."""
    lock = EntryLock(entry, BUILD_SUFFIX)
    waited_since = last_report = None
    while not lock.acquire(shared=False, blocking=False):
        now = time.monotonic()
        if last_report is None or now - last_report >= WAIT_REPORT_EVERY_S:
            waited = 0 if waited_since is None else now - waited_since
            log.info(
                "waiting for %s to finish building the decoded cache entry %s (%.0f s so far)",
                lock.holder(),
                entry.name,
                waited,
            )
            waited_since = waited_since or now
            last_report = now
        time.sleep(0.5)
    lock.write_holder()
    return lock


def is_complete(entry: Path) -> bool:
    """An entry is usable once all its files exist (``meta.json`` is written last and the
    folder renamed into place; a half-removed entry lacks some)."""
    return all((entry / name).is_file() for name in FILES)


def discard(folder: Path) -> bool:
    """Remove ``folder`` so that it disappears at once: rename it aside, then delete it.
    False when it could not be renamed (another user's entry); the rest is best effort."""
    aside = folder.with_name(f"{folder.name}{TMP_MARK}rm-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return True
    except OSError as error:
        log.warning("could not remove %s (%s)", folder, error.strerror)
        return False
    shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():  # renamed out of use, but its files are another user's
        log.warning(
            "could not delete the files of %s (permission): it is out of use; its owner's next "
            "load or `cache clear` frees the space",
            folder.name,
        )
    return True


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
    """The entry's description, or None when it is not a complete entry of this format."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != ENTRY_FORMAT or not is_complete(entry):
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
    """Whether a process reads the entry (holds its use lock)."""
    lock = EntryLock(entry)
    try:
        return not lock.acquire(shared=False, blocking=False)
    finally:
        lock.close()


IN_USE = "in use by a running process"


def remove_entry(entry: Path, why: str) -> str | None:
    """Remove an entry unless a process reads it; None when removed, else the reason
    (``IN_USE``, or the error of a removal that failed: another user's entry)."""
    lock = EntryLock(entry)
    try:
        if not lock.acquire(shared=False, blocking=False):
            log.info("cache entry %s is %s; not removed (%s)", entry.name, IN_USE, why)
            return IN_USE
        if not discard(entry):
            return "could not remove it (permission); its owner can, or fix the permissions"
        lock.remove_file()
        _remove_orphan_lock(entry, BUILD_SUFFIX)
        log.info("removed cache entry %s (%s)", entry.name, why)
        return None
    finally:
        lock.close()


def remove_build_leftovers(entry: Path) -> None:
    """Temp folders of earlier builds of ``entry``; call with its build lock held."""
    for tmp in entry.parent.glob(entry.name + TMP_MARK + "*"):
        shutil.rmtree(tmp, ignore_errors=True)
        if tmp.exists():
            log.warning("could not remove %s (permission); its owner can", tmp.name)
        else:
            log.info("removed the leftovers of an interrupted cache build: %s", tmp.name)


def _remove_orphan_lock(entry: Path, suffix: str) -> bool:
    """Delete a lock file of an entry that does not exist and is not being built."""
    lock = EntryLock(entry, suffix)
    try:
        if not lock.acquire(shared=False, blocking=False):
            return False
        if entry.exists() or list(entry.parent.glob(entry.name + TMP_MARK + "*")):
            return False  # checked under the lock: it was built (or is being) meanwhile
        lock.remove_file()
        return not lock.path.exists()
    finally:
        lock.close()


def _entry_of(path: Path) -> Path:
    name = path.name.split(TMP_MARK)[0]
    for suffix in (USE_SUFFIX, BUILD_SUFFIX):
        name = name.removesuffix(suffix)
    return path.with_name(name)


def clean_orphans(cache_dir: Path) -> int:
    """Remove temp folders of killed builds, lock files left with no entry, and entries of an
    older format; return how many were removed. Anything whose lock is held (a build in
    progress, a reader) is left alone; what cannot be removed (another user's) is logged."""
    folder = decoded_dir(cache_dir)
    if not folder.is_dir():
        return 0
    removed = 0
    # temp folders first: the lock files of a removed temp folder are orphans in the same pass
    for path in sorted(folder.iterdir(), key=lambda path: TMP_MARK not in path.name):
        entry = _entry_of(path)
        if TMP_MARK in path.name:
            build = EntryLock(entry, BUILD_SUFFIX)
            try:
                if build.acquire(shared=False, blocking=False):
                    remove_build_leftovers(entry)
                    removed += not path.exists()
            finally:
                build.close()
        elif path.name.endswith((USE_SUFFIX, BUILD_SUFFIX)):
            if not entry.exists():
                suffix = BUILD_SUFFIX if path.name.endswith(BUILD_SUFFIX) else USE_SUFFIX
                removed += _remove_orphan_lock(entry, suffix)
        elif path.is_dir():
            named = ENTRY_NAME.match(path.name)
            if named and int(named["version"]) < ENTRY_FORMAT:
                removed += remove_entry(path, "written by an older version") is None
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
        why = f"data.cache_max_gb: cache over {max_bytes / 1e9:.3g} GB"
        if remove_entry(info.path, why) is None:
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


def clear(cache_dir: Path, older_than_days: float | None) -> tuple[list[Path], dict[Path, str]]:
    """Remove every entry (or those unused for ``older_than_days``) and the orphans; return
    (removed, {kept entry: why})."""
    clean_orphans(cache_dir)
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed, kept = [], {}
    for info in list_entries(cache_dir):
        if cutoff is not None and info.last_used >= cutoff:
            continue
        why = remove_entry(info.path, "cache clear")
        if why is None:
            removed.append(info.path)
        else:
            kept[info.path] = why
    return removed, kept


def write_meta(folder: Path, meta: dict) -> None:
    """``meta.json``, written last: its presence marks the entry complete."""
    (folder / "meta.json").write_text(json.dumps({"format": ENTRY_FORMAT, **meta}))


def share(folder: Path) -> None:
    """Give a built entry the cache's modes (group-readable, never world-readable)."""
    for child in folder.iterdir():
        child.chmod(file_mode(folder.parent))
    folder.chmod(folder_mode(folder.parent))


def reserve(fd: int, size: int, where: Path) -> None:
    """Allocate ``size`` bytes for the open file ``fd`` in folder ``where`` now: a memory map
    over a sparse file that hits a full disk kills the process with SIGBUS, so running out of
    space must happen here, as one clear error."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        free = shutil.disk_usage(where).free
        raise DataError(
            f"cannot reserve {size / 1e9:.2f} GB for decoded images in {where} "
            f"({error.strerror}; {free / 1e9:.2f} GB free); free space (`deepfake-detect "
            "cache clear`), set data.cache_dir to a larger disk (with data.cache=none: "
            "TMPDIR), or lower data.image_size"
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
