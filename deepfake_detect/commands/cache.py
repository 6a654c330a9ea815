"""``deepfake-detect cache warm|list|clear``: the decoded-image cache the trainer reads.

``warm`` decodes a dataset's splits once (before a sweep, or on a login node) so no training
job waits for it; ``list`` shows the entries; ``clear`` removes entries not in use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from deepfake_detect.commands.options import add_cache_dir_option, format_age, number_type


def image_size(text: str) -> int:
    """argparse type of ``--size``: what ``data.image_size`` accepts."""
    from deepfake_detect.config.validation import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

    return number_type(
        int,
        lambda value: MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE,
        f"an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}",
    )(text)


days = number_type(float, lambda value: value >= 0, "a number of days >= 0")
gigabytes = number_type(float, lambda value: 0 < value < float("inf"), "a size in GB > 0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``cache warm``, ``cache list`` and ``cache clear``."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    warm = actions.add_parser("warm", help="decode a dataset's splits into the cache now")
    warm.add_argument("data_root", type=Path, help="the folder with Train/, Validation/, Test/")
    warm.add_argument(
        "--size", type=image_size, required=True, help="image size in px (data.image_size)"
    )
    warm.add_argument(
        "--split",
        action="append",
        help="split folder (repeatable; default: every configured split that exists)",
    )
    warm.add_argument(
        "--classes",
        nargs=2,
        metavar=("CLASS", "CLASS"),
        help="the two class folders (default: the trainer's data.classes)",
    )
    warm.add_argument(
        "--max-gb",
        type=gigabytes,
        help="then remove least recently used entries beyond this size (data.cache_max_gb)",
    )
    listing = actions.add_parser("list", help="entries: root, split, size, images, GB, last used")
    clearing = actions.add_parser("clear", help="remove entries that no process is using")
    which = clearing.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--older-than", type=days, metavar="DAYS", help="only entries unused for DAYS days"
    )
    which.add_argument("--all", action="store_true", help="every entry not in use")
    for action in (warm, listing, clearing):
        add_cache_dir_option(action, allow_none=False)


def trainer_data_defaults() -> tuple[list[str], list[str]]:
    """The trainer's default ``data.classes`` and split folders (from its config)."""
    from omegaconf import OmegaConf

    from deepfake_detect.config.paths import CONFIG_DIR

    data = OmegaConf.load(CONFIG_DIR / "data" / "synthetic.yaml")
    splits = [str(name) for name in data.splits.values() if name]
    return [str(name) for name in data.classes], splits


def warm(args: argparse.Namespace) -> int:
    """Build (or find) the entry of every split; a corrupt file is listed, not fatal."""
    from deepfake_detect.data.decode_cache import load_split
    from deepfake_detect.data.layout import DataError, require_root, scan_split

    classes, splits = trainer_data_defaults()
    classes = list(args.classes or classes)
    root = require_root(args.data_root)
    wanted = args.split or [name for name in splits if (root / name).is_dir()]
    if not wanted:
        raise DataError(
            f"{root} holds none of the split folders {', '.join(splits)}; point at the folder "
            "that holds them, or name them with --split"
        )
    for split in wanted:
        files = scan_split(root, split, classes)
        start = time.perf_counter()
        decoded = load_split(files, args.size, True, args.cache_dir, max_gb=args.max_gb)
        seconds = time.perf_counter() - start
        how = "already cached" if decoded.from_cache else f"{len(files) / seconds:.0f} img/s"
        print(
            f"{split}: {len(files)} images at {args.size} px in {seconds:.1f} s ({how})"
            + (f"; {len(decoded.skipped)} unreadable (see the warnings)" if decoded.skipped else "")
        )
        if decoded.lease is not None:
            decoded.lease.close()
    print(f"cache: {args.cache_dir}")
    return 0


def list_entries(args: argparse.Namespace) -> int:
    """One line per entry, least recently used first."""
    from deepfake_detect.data.cache_store import clean_orphans, in_use
    from deepfake_detect.data.cache_store import list_entries as entries

    clean_orphans(args.cache_dir)
    found = entries(args.cache_dir)
    if not found:
        print(f"no decoded cache entries in {args.cache_dir}")
        return 0
    print(
        f"{'entry':<48} {'split':<12} {'size':>5} {'images':>8} {'corrupt':>7} {'GB':>7}  "
        f"{'last used':<9}  {'in use':<6}  root"
    )
    now = time.time()
    for info in found:
        print(
            f"{info.path.name:<48} {info.split:<12} {info.size:>5} {info.images:>8} "
            f"{info.corrupt:>7} {info.bytes / 1e9:>7.3f}  {format_age(now - info.last_used):<9}"
            f"  {'yes' if in_use(info.path) else 'no':<6}  {info.root}"
        )
    total = sum(info.bytes for info in found)
    print(f"{len(found)} entries, {total / 1e9:.3f} GB in {args.cache_dir}")
    return 0


def clear(args: argparse.Namespace) -> int:
    """Remove unused entries (all, or those unused for --older-than days) and leftovers."""
    from deepfake_detect.data.cache_store import clear as clear_cache

    removed, kept = clear_cache(args.cache_dir, None if args.all else args.older_than)
    print(f"removed {len(removed)} entries from {args.cache_dir}")
    for entry, why in kept.items():
        print(f"kept {entry.name}: {why}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch the action; data errors are one line and exit 2."""
    from deepfake_detect.data.layout import DataError

    action = {"warm": warm, "list": list_entries, "clear": clear}[args.action]
    try:
        return action(args)
    except DataError as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
