"""Config values that cannot train are one line at compose time, before TensorFlow loads and
before any MLflow run exists (issue 11, item 1)."""

from __future__ import annotations

import shutil

import pytest

from deepfake_detect.config.validation import ConfigError, check_training_config
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optimizer.lr=-1.0", "optimizer.lr=-1.0"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("seed=abc", "seed='abc'"),
        ("trainer.epochs=abc", "trainer.epochs='abc'"),
        ("trainer.batch_size=0", "trainer.batch_size=0"),
        ("model.dropout=1.5", "model.dropout=1.5"),
        ("data.image_size=7", "data.image_size=7"),
        ("trainer.precision=fp8", "trainer.precision='fp8'"),
        ("trainer.strategy=tpu", "trainer.strategy='tpu'"),
        ("data.cache=ram", "data.cache='ram'"),
        ("data.classes=[Fake,Real,Other]", "data.classes="),
        ("data.positive_class=Cat", "data.positive_class='Cat'"),
        ("trainer.parallel_calls=0", "trainer.parallel_calls=0"),
        ("data.cache_max_gb=-1", "data.cache_max_gb=-1"),
        ("optimizer.lr=inf", "optimizer.lr=inf"),
        ("data.image_size=4096", "data.image_size=4096"),
        ("data.splits.train=null", "data.splits.train=None"),
        ("data.splits.val=Train", "data.splits="),
    ],
)
def test_bad_value_names_key_value_and_what_is_allowed(compose_cfg, override, named):
    with pytest.raises(ConfigError) as raised:
        check_training_config(compose_cfg([override]))
    assert str(raised.value).startswith(named)
    assert "\n" not in str(raised.value)


def test_integer_learning_rate_is_a_learning_rate(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg(["optimizer.lr=1"])
    check_training_config(cfg)
    assert float(instantiate(cfg.optimizer).learning_rate.numpy()) == 1.0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data=deepfake_faces"], "data.root is not set for data=deepfake_faces"),
        (["optimizer.lr=-1.0"], "optimizer.lr=-1.0: expected a finite number > 0"),
    ],
)
def test_cli_stops_before_any_run_exists(tmp_path, overrides, expected):
    """No silent training on the synthetic images; no run, not even a store, is created."""
    store = tmp_path / "store" / "mlflow.db"
    result = run_cli(
        ["-m", "deepfake_detect.train", f"tracking.uri=sqlite:///{store}", *overrides],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {expected}"] or (len(lines) == 1 and expected in lines[0]), (
        result.stderr[-2000:]
    )
    assert not store.exists()


def test_odd_files_are_skipped_or_named(tmp_path, compose_cfg, caplog):
    """A dangling symlink and a symlink loop are unreadable images (named in strict mode,
    skipped with skip_corrupt), a FIFO named x.jpg is left out (no hang), a 16-bit PNG is
    scaled, not clipped to white, and an extra class folder is reported."""
    import os

    import numpy as np
    from PIL import Image

    from deepfake_detect.data.layout import DataError
    from deepfake_detect.data.prepare import prepare_data
    from deepfake_detect.data.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, 32, {"Train": 6, "Validation": 4, "Test": 4}, seed=2)
    real = root / "Train" / "Real"
    (real / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (real / "loop.jpg").symlink_to(real / "loop.jpg")
    os.mkfifo(real / "pipe.jpg")
    gray16 = np.full((32, 32), 32768, dtype=np.uint16)  # mid grey in 16 bit
    Image.fromarray(gray16).save(real / "deep.png")
    (root / "Train" / "Unknown").mkdir()
    overrides = [f"data.root={root}", "data.image_size=32", "data.cache=none"]

    with pytest.raises(DataError, match="dangling.jpg") as strict:
        prepare_data(compose_cfg(overrides).data)
    assert "\n" not in str(strict.value)

    data = prepare_data(compose_cfg([*overrides, "data.skip_corrupt=true"]).data)
    assert sorted(os.path.basename(p) for p in data.train.skipped) == ["dangling.jpg", "loop.jpg"]
    assert len(data.train.labels) == 6 * 2 + 1  # generated images plus the 16-bit PNG
    assert "pipe.jpg" in caplog.text and "not a regular file" in caplog.text
    assert "Unknown" in caplog.text
    from deepfake_detect.data.images import load_image

    assert 120 <= load_image(real / "deep.png", 32).mean() <= 135


def test_decoding_reports_progress_in_plain_logs(tmp_path, caplog, monkeypatch):
    """Not on a terminal (SLURM logs, CI): log lines with count, rate and ETA."""
    import logging

    from deepfake_detect.data import decode_cache, progress
    from deepfake_detect.data.layout import scan_split
    from deepfake_detect.data.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, 32, {"Train": 5, "Validation": 2}, seed=4)
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger=progress.__name__)
    decode_cache.decode_split(scan_split(root, "Train", ["Real", "Fake"]), 32, False)
    lines = [r.getMessage() for r in caplog.records if "img/s" in r.getMessage()]
    assert lines, "at least the closing line"
    assert lines[-1].startswith(f"decoding {root / 'Train'} at 32 px: 10/10 images")
    assert "ETA 0 s" in lines[-1]


PERMISSIONS = """
import sys
from pathlib import Path
from deepfake_detect.data.decode_cache import decode_split
from deepfake_detect.data.layout import DataError, scan_split
try:
    decode_split(scan_split(Path(sys.argv[1]), "Train", ["Real", "Fake"]), 32, False)
except DataError as error:
    print(error)
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_permission_problems_are_named_as_such(tmp_path):
    """A folder that cannot be listed is an error naming it (not silently dropped), and a file
    that cannot be read is a PermissionError naming the file. Root reads everything, so the
    check runs as the unprivileged user nobody (setpriv)."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from deepfake_detect.data.synthetic import generate_dataset
    from tests.conftest import clean_env

    base = Path(tempfile.mkdtemp(prefix="dfd-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        root = base / "data"
        generate_dataset(root, 32, {"Train": 3}, seed=0)
        locked = root / "Train" / "Fake" / "more"
        locked.mkdir()
        locked.chmod(0)
        secret = root / "Train" / "Real" / "real_00001.jpg"
        secret.chmod(0)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        prefix = as_nobody if os.geteuid() == 0 else []

        def attempt() -> str:
            done = subprocess.run(
                [*prefix, sys.executable, "-c", PERMISSIONS, str(root)],
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            return done.stdout.strip()

        assert attempt() == (
            f"cannot list folder {locked} (Permission denied); fix its permissions or move it "
            "out of the dataset"
        )
        locked.rmdir()
        said = attempt()
        assert said.startswith(f"cannot decode image {secret} (PermissionError"), said
        assert "fix its permissions" in said
    finally:
        shutil.rmtree(base, ignore_errors=True)
