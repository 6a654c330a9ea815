"""The synthetic dataset: layout, determinism, and no global statistic giving the class away."""

from __future__ import annotations

import numpy as np
from PIL import Image

from deepfake_detect.commands.cli import main
from deepfake_detect.data.synthetic import render_sample


def test_cli_writes_layout(tmp_path, capsys):
    assert (
        main(
            [
                "synth",
                str(tmp_path / "d"),
                "--size",
                "32",
                "--train",
                "3",
                "--val",
                "2",
                "--test",
                "1",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    for split, n in (("Train", 3), ("Validation", 2), ("Test", 1)):
        for label in ("Real", "Fake"):
            files = sorted((tmp_path / "d" / split / label).glob("*.jpg"))
            assert len(files) == n
            assert Image.open(files[0]).size == (32, 32)
    assert "wrote 12 images" in capsys.readouterr().out


def test_deterministic_per_seed():
    assert render_sample(1, "Train", "Fake", 4, 48) == render_sample(1, "Train", "Fake", 4, 48)
    assert render_sample(1, "Train", "Fake", 4, 48) != render_sample(2, "Train", "Fake", 4, 48)


def test_global_statistics_do_not_separate_classes():
    def stats(label):
        images = [
            np.asarray(
                Image.open(__import__("io").BytesIO(render_sample(0, "Train", label, i, 64))),
                np.float32,
            )
            for i in range(40)
        ]
        return np.array([[im.mean(), im.std()] for im in images])

    real, fake = stats("Real"), stats("Fake")
    pooled = np.sqrt((real.var(0) + fake.var(0)) / 2)
    effect = np.abs(real.mean(0) - fake.mean(0)) / pooled
    assert (effect < 0.5).all(), effect
