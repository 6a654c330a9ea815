"""The on-disk decoded-image cache: hits, invalidation, shared variants, concurrent builders,
killed builds, entries in use, the size cap, memory that does not grow with the split, and
the ``deepfake-detect cache`` commands."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deepfake_detect.config.paths import PROJECT_ROOT
from deepfake_detect.data import cache_store
from deepfake_detect.data.decode_cache import load_split
from deepfake_detect.data.layout import DataError, scan_split
from deepfake_detect.data.synthetic import generate_dataset
from tests.conftest import clean_env, detect, run_cli

CLASSES = ["Real", "Fake"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    generate_dataset(root, 32, {"Train": 6, "Validation": 2, "Test": 2}, seed=4)
    return root


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "decoded").iterdir() if p.is_dir())


def leftovers(cache: Path) -> list[str]:
    """Anything in the cache folder that is neither an entry nor an entry's lock."""
    names = {p.name for p in entries(cache)}
    return sorted(
        p.name
        for p in (cache / "decoded").iterdir()
        if p.name not in names
        and p.name.removesuffix(".lock") not in names
        and p.name.removesuffix(".build") not in names
    )


def run_script(code: str, *args: object) -> subprocess.CompletedProcess:
    """``code`` (a script reading ``sys.argv``) in a fresh Python process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_second_load_hits_the_cache(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    first = load_split(files, 24, False, cache)
    second = load_split(files, 24, False, cache)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert isinstance(second.images, np.memmap)  # trained from the map, not a RAM copy
    np.testing.assert_array_equal(second.usable_images(), first.usable_images())
    assert second.usable_images().shape == (12, 24, 24, 3)
    assert sorted(second.labels) == [0] * 6 + [1] * 6
    for path, label in zip(second.paths, second.labels, strict=True):
        assert path.parent.name == CLASSES[label]


def test_other_size_is_another_entry(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    load_split(files, 24, False, cache)
    assert not load_split(files, 16, False, cache).from_cache
    assert len(entries(cache)) == 2


def test_changed_file_invalidates_and_replaces_the_entry(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    before = load_split(files, 24, False, cache)
    before.lease.close()
    (old_entry,) = entries(cache)
    changed = data / "Train" / "Fake" / "fake_00000.jpg"
    other = data / "Train" / "Real" / "real_00003.jpg"
    changed.write_bytes(other.read_bytes())
    after = load_split(scan_split(data, "Train", CLASSES), 24, False, cache)
    assert not after.from_cache
    row = after.paths.index(changed)
    assert not np.array_equal(after.images[after.rows[row]], before.images[before.rows[row]])
    (new_entry,) = entries(cache)
    assert new_entry != old_entry
    assert leftovers(cache) == []


def test_two_workers_starting_at_once_build_once(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: load_split(files, 24, False, cache), range(2)))
    assert sorted(r.from_cache for r in results) == [False, True]
    np.testing.assert_array_equal(results[0].usable_images(), results[1].usable_images())
    assert len(entries(cache)) == 1
    assert leftovers(cache) == []


VARIANT = """
    import json, sys
    from deepfake_detect.data.decode_cache import load_split
    from deepfake_detect.data.layout import DataError, class_names, scan_split
    root, cache, positive, skip = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "skip"
    from pathlib import Path
    files = scan_split(Path(root), "Train", class_names(positive, ["Fake", "Real"]))
    try:
        split = load_split(files, 24, skip, Path(cache))
    except DataError as error:
        print(json.dumps({"error": str(error)}))
    else:
        positives = sorted(p.name for p, label in zip(split.paths, split.labels) if label == 1)
        print(json.dumps({"from_cache": split.from_cache, "n": len(split), "positives": positives}))
"""


def variant(data: Path, cache: Path, positive: str, policy: str) -> dict:
    result = run_script(VARIANT, data, cache, positive, policy)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_strict_skip_and_positive_class_variants_share_one_entry(data, tmp_path):
    """Two processes with other settings read the same entry instead of evicting each other;
    labels follow each process's positive class; strict mode names the corrupt file the
    entry recorded, without decoding again."""
    cache = tmp_path / "cache"
    bad = data / "Train" / "Real" / "real_00002.jpg"
    bad.write_bytes(b"not a jpeg")
    skip_fake = variant(data, cache, "Fake", "skip")
    assert skip_fake["from_cache"] is False and skip_fake["n"] == 11
    assert all(name.startswith("fake_") for name in skip_fake["positives"])
    skip_real = variant(data, cache, "Real", "skip")
    assert skip_real["from_cache"] is True and skip_real["n"] == 11
    assert all(name.startswith("real_") for name in skip_real["positives"])
    strict = variant(data, cache, "Fake", "strict")
    assert str(bad) in strict["error"] and "data.skip_corrupt=true" in strict["error"]
    assert variant(data, cache, "Real", "skip")["from_cache"] is True
    assert len(entries(cache)) == 1


def test_strict_decoding_stops_at_the_first_corrupt_file(tmp_path, caplog, monkeypatch):
    """The images queued after a corrupt file are not decoded (progress never reaches the end)
    and a failed strict build leaves no entry and no temp folder."""
    import logging

    from deepfake_detect.data import progress

    root = tmp_path / "data"
    generate_dataset(root, 32, {"Train": 100, "Validation": 2}, seed=4)
    (root / "Train" / "Fake" / "fake_00000.jpg").write_bytes(b"broken")  # first in order
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger=progress.__name__)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="fake_00000.jpg"):
        load_split(scan_split(root, "Train", CLASSES), 32, False, cache)
    assert not [r for r in caplog.records if "200/200" in r.getMessage()]
    assert entries(cache) == [] and leftovers(cache) == []


KILLED_BUILD = """
    import os, signal, sys
    from pathlib import Path
    from deepfake_detect.data import decode_cache
    from deepfake_detect.data.layout import scan_split
    real, calls = decode_cache.read_and_decode, []
    def dies_on_the_fifth(path, size):
        calls.append(path)
        if len(calls) >= 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, size)
    decode_cache.read_and_decode = dies_on_the_fifth
    files = scan_split(Path(sys.argv[1]), "Train", ["Real", "Fake"])
    decode_cache.load_split(files, int(sys.argv[3]), False, Path(sys.argv[2]))
"""


def test_a_killed_build_leaves_nothing_after_the_next_build(data, tmp_path):
    cache = tmp_path / "cache"
    for size in ("24", "20"):
        killed = run_script(KILLED_BUILD, data, cache, size)
        assert killed.returncode == -9, killed.stderr[-2000:]
    temp = [p.name for p in (cache / "decoded").iterdir() if cache_store.TMP_MARK in p.name]
    assert len(temp) == 2  # what the two killed builds left
    split = load_split(scan_split(data, "Train", CLASSES), 24, False, cache)
    assert not split.from_cache and len(split) == 12
    assert [p.name for p in entries(cache)] == [
        p.name for p in entries(cache) if "-24px-" in p.name
    ]
    assert leftovers(cache) == [], "the other killed build (20 px) is cleaned up too"


READER = """
    import sys
    import numpy as np
    from pathlib import Path
    from deepfake_detect.data.decode_cache import load_split
    from deepfake_detect.data.layout import scan_split
    files = scan_split(Path(sys.argv[1]), "Train", ["Real", "Fake"])
    split = load_split(files, 24, False, Path(sys.argv[2]))
    print("ready", flush=True)
    sys.stdin.readline()
    print(int(np.asarray(split.images[split.rows]).astype(np.int64).sum()), flush=True)
"""


def start_reader(data: Path, cache: Path) -> subprocess.Popen:
    """A process that loads the Train split at 24 px and holds it until it reads a line on
    stdin, then prints the sum of every image it reads through its memory map."""
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(READER), str(data), str(cache)],
        env=clean_env(),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
    return reader


def test_entries_in_use_are_neither_removed_as_stale_nor_evicted(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    total = int(load_split(files, 24, False, cache).usable_images().astype(np.int64).sum())
    (in_use,) = entries(cache)
    reader = start_reader(data, cache)
    try:
        (data / "Train" / "Fake" / "fake_00001.jpg").unlink()  # the entry is now stale
        load_split(scan_split(data, "Train", CLASSES), 24, False, cache)
        load_split(scan_split(data, "Validation", CLASSES), 24, False, cache)
        assert in_use in entries(cache), "stale but in use: kept"
        removed = cache_store.evict(cache, max_bytes=0, keep=entries(cache)[0])
        assert in_use not in removed and in_use.is_dir()
        out, err = reader.communicate("\n", timeout=60)
        assert reader.returncode == 0, err
        assert int(out.split()[-1]) == total  # the reader read every image through its map
    finally:
        reader.kill()
    removed, kept = cache_store.clear(cache, older_than_days=None)
    assert in_use in removed and kept == {}
    assert entries(cache) == [] and leftovers(cache) == []


def test_cache_max_gb_evicts_the_least_recently_used(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    for size in (24, 20):
        load_split(files, size, False, cache).lease.close()
    load_split(files, 24, False, cache).lease.close()  # 24 px is now the more recent
    one_entry = max(cache_store.folder_bytes(e) for e in entries(cache))
    load_split(files, 16, False, cache, max_gb=1.5 * one_entry / 1e9).lease.close()
    assert sorted(p.name.split("-")[2] for p in entries(cache)) == ["16px", "24px"]


def test_entries_are_group_readable(data, tmp_path):
    cache = tmp_path / "cache"
    old = os.umask(0o077)  # even under a private umask
    try:
        load_split(scan_split(data, "Train", CLASSES), 24, False, cache)
    finally:
        os.umask(old)
    (entry,) = entries(cache)
    assert entry.stat().st_mode & 0o777 == 0o750  # group-readable, not world-readable
    assert (cache / "decoded").stat().st_mode & 0o777 == 0o750  # the folder it created
    for child in entry.iterdir():
        assert child.stat().st_mode & 0o777 == 0o640, child.name


def test_memory_of_a_cache_build_does_not_grow_with_the_split(tmp_path):
    """Building a 256 px entry of 800 images and reading it back through the training pipeline
    must not hold it in anonymous memory: in RAM it would be 157 MB against 39 MB for 200
    images (``make bench`` measures larger splits with the same script)."""
    growth = {}
    for count in (100, 400):
        root = tmp_path / f"data{count}"
        generate_dataset(root, 32, {"Train": count}, seed=1)
        result = subprocess.run(
            [sys.executable, "-m", "bench.cache_build", str(root), str(tmp_path / "cache")]
            + ["256", "8"],  # 256 px, batches of 8: the pipeline's own buffers stay small
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=PROJECT_ROOT,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        assert figures["images"] == 2 * count and not figures["from_cache"]
        growth[count] = figures["peak_anon_mb"] - figures["base_anon_mb"]
    assert growth[400] - growth[100] < 60, growth  # MB; a split in RAM adds ~118 MB


def test_cache_commands_warm_list_and_clear(data, tmp_path):
    cache = tmp_path / "cache"
    warm = detect(["cache", "warm", str(data), "--size", "32", "--cache-dir", str(cache)], tmp_path)
    assert warm.returncode == 0, warm.stderr
    assert [line.split(":")[0] for line in warm.stdout.splitlines()[:3]] == [
        "Train",
        "Validation",
        "Test",
    ]
    # the trainer's own load finds what warm built
    assert load_split(scan_split(data, "Train", CLASSES), 32, False, cache).from_cache
    again = detect(
        ["cache", "warm", str(data), "--size", "32", "--split", "Test", "--cache-dir", str(cache)],
        tmp_path,
    )
    assert again.returncode == 0 and "already cached" in again.stdout, again.stdout
    listing = detect(["cache", "list", "--cache-dir", str(cache)], tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()[1:-1]]
    assert sorted((row[1], row[2], row[3]) for row in rows) == [
        ("Test", "32", "4"),
        ("Train", "32", "12"),
        ("Validation", "32", "4"),
    ]
    assert all(row[-1] == str(data) for row in rows)
    assert "3 entries" in listing.stdout.splitlines()[-1]
    refused = detect(["cache", "clear", "--cache-dir", str(cache)], tmp_path)
    assert refused.returncode == 2 and "--older-than" in refused.stderr
    recent = detect(["cache", "clear", "--older-than", "1", "--cache-dir", str(cache)], tmp_path)
    assert recent.returncode == 0 and len(entries(cache)) == 3
    cleared = detect(["cache", "clear", "--all", "--cache-dir", str(cache)], tmp_path)
    assert cleared.returncode == 0 and "removed 3 entries" in cleared.stdout
    assert entries(cache) == [] and leftovers(cache) == []
    missing = detect(["cache", "warm", str(tmp_path / "nope"), "--size", "32"], tmp_path)
    assert missing.returncode == 2 and str(tmp_path / "nope") in missing.stderr


def test_runs_reading_other_class_folders_do_not_evict_each_other(data, tmp_path):
    cache = tmp_path / "cache"
    (data / "Train" / "Other").mkdir()
    for image in list((data / "Train" / "Real").iterdir())[:3]:
        (data / "Train" / "Other" / image.name).write_bytes(image.read_bytes())
    for _ in range(2):
        loads = [
            load_split(scan_split(data, "Train", classes), 24, False, cache)
            for classes in (["Real", "Fake"], ["Other", "Fake"])
        ]
    assert [split.from_cache for split in loads] == [True, True]
    assert len(entries(cache)) == 2


def test_an_entry_deleted_under_a_reader_is_built_again_without_waiting(data, tmp_path):
    """Someone deletes the entry (`rm -rf`, tmpwatch) while a run reads it: the reader keeps
    its memory map, and the next load builds a new entry at once instead of waiting for it."""
    cache = tmp_path / "cache"
    reader = start_reader(data, cache)
    try:
        (entry,) = entries(cache)
        shutil.rmtree(entry)
        again = load_split(scan_split(data, "Train", CLASSES), 24, False, cache)
        assert not again.from_cache and len(again) == 12
        out, err = reader.communicate("\n", timeout=60)
        assert reader.returncode == 0, err
        assert int(out.split()[-1]) == int(again.usable_images().astype(np.int64).sum())
    finally:
        reader.kill()


@pytest.mark.parametrize("lost", ["images.npy", "meta.json"])
def test_a_half_removed_entry_is_rebuilt(data, tmp_path, lost):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    load_split(files, 24, False, cache).lease.close()
    (entry,) = entries(cache)
    (entry / lost).unlink()
    assert cache_store.list_entries(cache) == []  # not listed as a usable entry
    rebuilt = load_split(files, 24, False, cache)
    assert not rebuilt.from_cache and rebuilt.usable_images().shape == (12, 24, 24, 3)
    assert [info.path for info in cache_store.list_entries(cache)] == [entry]


def test_waiting_for_another_build_says_who_builds(data, tmp_path):
    """A job that waits for another's build is told so (and by whom), then reads it."""
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    from deepfake_detect.data.decode_cache import CanonicalFiles, cache_entry

    entry = cache_entry(cache, CanonicalFiles.of(files), 32)
    build = cache_store.wait_to_build(entry)  # as if this process were building it
    waiter = subprocess.Popen(
        [sys.executable, "-m", "deepfake_detect.commands.cli", "cache", "warm", str(data)]
        + ["--size", "32", "--split", "Train", "--cache-dir", str(cache)],
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = waiter.stderr.readline()
        assert f"waiting for {socket.gethostname()}:{os.getpid()}" in first, first
    finally:
        build.close()
        out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err


def test_a_full_disk_is_one_line_not_a_crash(data, tiny_tmpfs, tmp_path):
    """A memory map over a sparse file dies with SIGBUS when the disk fills; the space is
    reserved first, so a full cache disk is one line naming what to do, and nothing is left."""
    (tiny_tmpfs / "filler").write_bytes(b"\0" * (3 * 1024 * 1024 - 16 * 1024))
    cache = tiny_tmpfs / "cache"
    result = detect(
        ["cache", "warm", str(data), "--size", "64", "--cache-dir", str(cache)], tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reserve"), lines
    assert "No space left on device" in lines[0] and "data.cache_dir" in lines[0]
    assert entries(cache) == [] and leftovers(cache) == []


@pytest.mark.skipif(
    shutil.which("setpriv") is None or os.geteuid() != 0,
    reason="needs root (to hand files to another user) and util-linux setpriv",
)
def test_clear_by_a_teammate_takes_the_entry_out_of_use_and_says_what_is_left(data):
    """A teammate may take a shared entry out of use (the folder is group-writable) but not
    delete its owner's files: `cache clear` says so, and the owner's next load frees them."""
    base = Path(tempfile.mkdtemp(prefix="dfd-team-", dir="/tmp"))
    try:
        base.chmod(0o755)
        cache = base / "cache"
        load_split(scan_split(data, "Train", CLASSES), 24, False, cache).lease.close()
        for path in [cache, *cache.rglob("*")]:  # a team cache: group nogroup (65534)
            os.chown(path, 0, 65534)
        (cache / "decoded").chmod(0o2770)  # the team may add entries and locks
        (entry,) = entries(cache)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        cleared = subprocess.run(
            [*prefix, sys.executable, "-m", "deepfake_detect.commands.cli", "cache", "clear"]
            + ["--all", "--cache-dir", str(cache)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/tmp",
        )
        assert cleared.returncode == 0, cleared.stderr
        assert "removed 1 entries" in cleared.stdout, cleared.stdout
        assert "could not delete the files of" in cleared.stderr, cleared.stderr
        assert not entry.exists() and entries(cache) != []  # aside, out of use
        load_split(scan_split(data, "Train", CLASSES), 20, False, cache).lease.close()
        assert [p.name.split("-")[2] for p in entries(cache)] == ["20px"]  # freed by the owner
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_cache_commands_refuse_what_cannot_work(data, tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    cases = [
        (["warm", str(data / "Train"), "--size", "32"], "holds none of the split folders"),
        (["warm", str(data), "--size", "32", "--cache-dir", str(a_file)], "cannot use the decoded"),
    ]
    for args, says in cases:
        result = detect(["cache", *args], tmp_path)
        assert result.returncode == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], lines
    for args in (["warm", str(data), "--size", "16"], ["clear", "--older-than", "-5"]):
        assert detect(["cache", *args], tmp_path).returncode == 2, args


NO_SPACE = """
import errno, os, sys
def no_space(fd, offset, size):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
os.posix_fallocate = no_space  # as on a full disk, without needing root to make one
from deepfake_detect.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_no_space_for_the_reservation_is_one_line(data, tmp_path):
    cache = tmp_path / "cache"
    result = run_cli(
        ["-c", NO_SPACE, "cache", "warm", str(data), "--size", "32", "--cache-dir", str(cache)],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reserve" in lines[0] and "No space" in lines[0], lines
    assert entries(cache) == [] and leftovers(cache) == []
