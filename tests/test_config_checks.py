"""Config values that cannot train are one line at compose time, before TensorFlow loads and
before any MLflow run exists (issue 11, item 1)."""

from __future__ import annotations

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
        (["optimizer.lr=-1.0"], "optimizer.lr=-1.0: expected a number > 0"),
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

    from deepfake_detect.data import decode_cache
    from deepfake_detect.data.layout import scan_split
    from deepfake_detect.data.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, 32, {"Train": 5, "Validation": 2}, seed=4)
    monkeypatch.setattr(decode_cache, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger=decode_cache.__name__)
    decode_cache.decode_split(scan_split(root, "Train", ["Real", "Fake"]), 32, False)
    lines = [r.getMessage() for r in caplog.records if "img/s" in r.getMessage()]
    assert len(lines) == 10
    assert lines[-1].startswith(f"decoding {root / 'Train'} at 32 px: 10/10 images")
    assert "ETA 0 s" in lines[-1]
