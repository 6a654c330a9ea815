"""Turn the ``data`` config into decoded train/val/test arrays (checks first, no run yet)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from deepfake_detect.data.decode_cache import DecodedSplit, load_split
from deepfake_detect.data.layout import (
    DataError,
    SplitFiles,
    class_names,
    fingerprints,
    require_root,
    scan_split,
)

log = logging.getLogger(__name__)

# the last decoded splits of this process: trials of a same-process sweep (basic launcher,
# Optuna) on unchanged files reuse them instead of reloading the cache per trial
_last_decoded: tuple[tuple, dict[str, DecodedSplit]] | None = None


@dataclass(frozen=True)
class PreparedData:
    """Decoded splits plus what identifies them (logged with every run)."""

    root: Path
    class_names: list[str]
    train: DecodedSplit
    val: DecodedSplit
    test: DecodedSplit | None
    fingerprint: str
    leakage_duplicates: int = 0
    unexpected_folders: tuple[str, ...] = ()

    @property
    def skipped(self) -> int:
        """How many unreadable images were skipped across splits."""
        splits = [self.train, self.val] + ([self.test] if self.test is not None else [])
        return sum(len(split.skipped) for split in splits)


def scan_all(data: DictConfig) -> tuple[Path, list[str], dict[str, SplitFiles]]:
    """Check the folder layout of every configured split before anything is decoded."""
    root = require_root(data.root)
    names = class_names(data.positive_class, list(data.classes))
    found = {
        "train": scan_split(root, data.splits.train, names),
        "val": scan_split(root, data.splits.val, names),
    }
    test_split = data.splits.get("test")
    if test_split and (root / test_split).is_dir():
        found["test"] = scan_split(root, test_split, names)
    elif test_split:
        log.info("no %s split under %s: skipping test evaluation", test_split, root)
    return root, names, found


@dataclass(frozen=True)
class ScannedData:
    """The checked layout of every split and the data's fingerprints (no image decoded)."""

    root: Path
    class_names: list[str]
    found: dict[str, SplitFiles]
    fingerprint: str  # relative paths, sizes, labels: the same files anywhere
    files_now: str  # plus mtimes


def scan_data(data: DictConfig) -> ScannedData:
    """Scan and fingerprint ``data.root`` (raises DataError naming what to fix)."""
    root, names, found = scan_all(data)
    # with mtimes too (the memo key), taken before decoding: a file changed meanwhile is not
    # memoised as current
    plain, timed = fingerprints(list(found.values()))
    return ScannedData(root, names, found, plain, timed)


def require_both_classes(files: SplitFiles, split: DecodedSplit, names: list[str]) -> None:
    """A split whose usable images are all of one class cannot score a detector: stop."""
    counts = np.bincount(np.asarray(split.labels, dtype=np.int64), minlength=2)
    if counts.min() == 0:
        raise DataError(
            f"split {files.root / files.split} has {counts[0]} {names[0]} and {counts[1]} "
            f"{names[1]} usable images ({len(split.skipped)} unreadable skipped); both classes "
            "are needed: add images of the missing class or fix the unreadable files"
        )


def prepare_data(data: DictConfig, scanned: ScannedData | None = None) -> PreparedData:
    """Scan (unless given), fingerprint and decode (through the on-disk cache unless
    ``data.cache=none``)."""
    if data.cache not in ("disk", "memory", "none"):
        raise DataError(f"data.cache={data.cache!r}; choose disk, memory or none")
    global _last_decoded
    scanned = scanned or scan_data(data)
    root, names, found = scanned.root, scanned.class_names, scanned.found
    data_fingerprint, files_now = scanned.fingerprint, scanned.files_now
    cache_dir = None if data.cache == "none" else Path(data.cache_dir)
    settings = (tuple(found), int(data.image_size), bool(data.skip_corrupt), str(cache_dir))
    settings += (str(data.cache),)
    if _last_decoded is not None and _last_decoded[0] == (*settings, files_now):  # a later trial
        decoded = _last_decoded[1]
    else:
        _last_decoded = None  # free the previous arrays before decoding new ones
        decoded = {
            split: load_split(
                files,
                int(data.image_size),
                bool(data.skip_corrupt),
                cache_dir,
                in_memory=data.cache == "memory",
                max_gb=data.get("cache_max_gb"),
            )
            for split, files in found.items()
        }
        if cache_dir is not None:  # data.cache=none decodes every time, as documented
            _last_decoded = ((*settings, files_now), decoded)
    for name, split in decoded.items():
        require_both_classes(found[name], split, names)
    return PreparedData(
        root=root,
        class_names=names,
        train=decoded["train"],
        val=decoded["val"],
        test=decoded.get("test"),
        fingerprint=data_fingerprint,
        leakage_duplicates=report_leakage(decoded),
        unexpected_folders=tuple(
            f"{files.split}/{name}" for files in found.values() for name in files.ignored_folders
        ),
    )


def report_leakage(decoded: dict[str, DecodedSplit]) -> int:
    """Count images whose exact bytes appear in more than one split (content hash), and warn
    with examples: a test image also in Train inflates every test score."""
    seen: dict[bytes, tuple[str, Path]] = {}
    pairs: list[tuple[Path, Path]] = []
    for name, split in decoded.items():
        local: dict[bytes, Path] = {}
        for digest, path in zip(split.digests, split.paths, strict=True):
            key = digest.tobytes()
            earlier = seen.get(key)
            if earlier is not None and earlier[0] != name:
                pairs.append((earlier[1], path))
            local.setdefault(key, path)
        for key, path in local.items():
            seen.setdefault(key, (name, path))
    if pairs:
        examples = "; ".join(f"{a} = {b}" for a, b in pairs[:3])
        log.warning(
            "%d image(s) appear in more than one split (identical files), e.g. %s: remove "
            "them from all but one split (tag leakage_duplicates)",
            len(pairs),
            examples,
        )
    return len(pairs)
