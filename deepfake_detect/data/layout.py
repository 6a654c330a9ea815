"""Find and check a ``ROOT/{split}/{class}/`` image folder (no TensorFlow here)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
SYNTH_HINT = (
    "make one with `deepfake-detect synth DIR` (or `make data`), or point data.root at a "
    "folder laid out as Train|Validation|Test/{Real,Fake}/*.jpg"
)


class DataError(ValueError):
    """A problem with the user's data folder, with what to do about it."""


@dataclass(frozen=True)
class SplitFiles:
    """The image files of one split, in a stable order, with 0/1 labels."""

    split: str
    root: Path
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    ignored_folders: tuple[str, ...] = ()  # sub-folders that are not one of data.classes
    class_folders: tuple[str, ...] = ()  # the class folders read ([negative, positive])

    def __len__(self) -> int:
        return len(self.paths)


def is_image_file(path: Path) -> bool:
    """True for image suffixes in any case; hidden files (``.DS_Store``) never count."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _unlistable(error: OSError) -> None:
    raise DataError(
        f"cannot list folder {error.filename} ({error.strerror}); fix its permissions or move "
        "it out of the dataset"
    )


def list_images(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted for a stable order.

    Symlinks count as the files they point to; a dangling one or a loop is kept, so decoding
    reports it as unreadable (skipped with ``data.skip_corrupt``). Anything that is not a
    regular file (a FIFO or device named ``x.jpg``) is left out with a warning: opening it
    could block for ever. A sub-folder that cannot be listed is an error naming it.
    """
    found = []
    for dirpath, _, names in os.walk(folder, onerror=_unlistable):
        for name in names:
            path = Path(dirpath) / name
            if not is_image_file(path):
                continue
            try:
                regular = stat.S_ISREG(path.stat().st_mode)
            except OSError:  # dangling symlink, loop: the decoder names it
                regular = True
            if regular:
                found.append(path)
            else:
                log.warning("ignoring %s: not a regular file", path)
    return sorted(found)


def class_names(positive_class: str, classes: list[str]) -> list[str]:
    """Class names ordered ``[negative, positive]`` so label 1 is the positive class."""
    if positive_class not in classes:
        raise DataError(
            f"data.positive_class={positive_class!r} is not one of the classes {classes}; "
            "set data.positive_class to one of them"
        )
    negatives = [name for name in classes if name != positive_class]
    return [*negatives, positive_class]


def require_root(root: str | Path | None) -> Path:
    """Resolve ``data.root`` or raise a DataError saying how to fix it."""
    if root in (None, "", "???"):
        raise DataError(f"data.root is not set; {SYNTH_HINT}")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"data.root {path} does not exist or is not a folder; {SYNTH_HINT}")
    return path


def require_split_folder(root: str | Path, split: str) -> Path:
    """``root/split`` must exist (checked before a model loads, so a typo fails fast)."""
    folder = require_root(root) / split
    if not folder.is_dir():
        raise DataError(f"split folder {folder} is missing; pick one with --split")
    return folder


def scan_split(root: Path, split: str, classes: list[str]) -> SplitFiles:
    """List one split; ``classes`` is ``[negative, positive]``. Raises on missing/empty folders."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"split folder {split_dir} is missing; {SYNTH_HINT}")
    paths: list[Path] = []
    labels: list[int] = []
    extra = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in classes)
    if extra:
        log.warning(
            "ignoring folder(s) %s in %s: not one of data.classes %s",
            ", ".join(extra),
            split_dir,
            classes,
        )
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DataError(f"class folder {class_dir} is missing; {SYNTH_HINT}")
        images = list_images(class_dir)
        if not images:
            raise DataError(f"class folder {class_dir} holds no images (.jpg/.png); {SYNTH_HINT}")
        paths.extend(images)
        labels.extend([label] * len(images))
    return SplitFiles(
        split=split,
        root=root,
        paths=tuple(paths),
        labels=tuple(labels),
        ignored_folders=tuple(extra),
        class_folders=tuple(classes),
    )


def fingerprints(files: list[SplitFiles]) -> tuple[str, str]:
    """Hashes of relative paths, sizes and labels, without and with mtimes, from one stat
    pass over the files: both change when the data does."""
    plain, timed = hashlib.sha256(), hashlib.sha256()
    for split in files:
        for path, label in zip(split.paths, split.labels, strict=True):
            try:
                info = path.stat()
                size, mtime = info.st_size, info.st_mtime_ns
            except OSError:  # dangling symlink or loop: unreadable, reported when decoding
                size, mtime = -1, -1
            rel = path.relative_to(split.root).as_posix()
            entry = f"{rel}\0{size}\0{label}".encode()
            plain.update(entry + b"\n")
            timed.update(entry + f"\0{mtime}\n".encode())
    return plain.hexdigest()[:16], timed.hexdigest()[:16]


def fingerprint(files: list[SplitFiles], with_mtime: bool = False) -> str:
    """Hash of relative paths and sizes (and mtimes if asked): changes when the data does."""
    plain, timed = fingerprints(files)
    return timed if with_mtime else plain
