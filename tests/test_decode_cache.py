"""The on-disk decoded-image cache: hits, invalidation, concurrent builders."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deepfake_detect.data.decode_cache import load_split
from deepfake_detect.data.layout import scan_split
from deepfake_detect.data.synthetic import generate_dataset

CLASSES = ["Real", "Fake"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    generate_dataset(root, 32, {"Train": 6, "Validation": 2, "Test": 2}, seed=4)
    return root


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "decoded").iterdir() if p.is_dir())


def test_second_load_hits_the_cache(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    first = load_split(files, 24, False, cache)
    second = load_split(files, 24, False, cache)
    assert (first.from_cache, second.from_cache) == (False, True)
    np.testing.assert_array_equal(np.asarray(second.images), first.images)
    assert second.images.shape == (12, 24, 24, 3)
    assert list(second.labels) == [0] * 6 + [1] * 6


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
    (old_entry,) = entries(cache)
    changed = data / "Train" / "Fake" / "fake_00000.jpg"
    other = data / "Train" / "Real" / "real_00003.jpg"
    changed.write_bytes(other.read_bytes())
    after = load_split(scan_split(data, "Train", CLASSES), 24, False, cache)
    assert not after.from_cache
    assert not np.array_equal(after.images[6], before.images[6])
    (new_entry,) = entries(cache)
    assert new_entry != old_entry


def test_two_workers_starting_at_once_build_once(data, tmp_path):
    cache = tmp_path / "cache"
    files = scan_split(data, "Train", CLASSES)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: load_split(files, 24, False, cache), range(2)))
    assert sorted(r.from_cache for r in results) == [False, True]
    np.testing.assert_array_equal(np.asarray(results[0].images), np.asarray(results[1].images))
    assert len(entries(cache)) == 1
    assert not [p for p in (cache / "decoded").iterdir() if ".tmp-" in p.name]
