"""The detector zoo presets (meso4, mesoinception4, xception): each trains for an epoch
through the real CLI, Grad-CAM finds its last convolution, too-small images and missing
weights files are refused with the config key named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from deepfake_detect.data.synthetic import generate_dataset
from deepfake_detect.models import mesonet, xception
from deepfake_detect.tracking.store import store_client
from tests.conftest import run_cli, tiny_overrides

pytestmark = pytest.mark.training

SMALLEST = {
    "meso4": mesonet.MIN_IMAGE_SIZE,
    "mesoinception4": mesonet.MIN_IMAGE_SIZE,
    "xception": xception.MIN_IMAGE_SIZE + 1,  # an even size near the minimum
}


@pytest.fixture(scope="module")
def xception_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Few images at Xception's size: 4 train, 4 val, 2 test per class."""
    root = tmp_path_factory.mktemp("xception_data")
    generate_dataset(root, SMALLEST["xception"], {"Train": 4, "Validation": 4, "Test": 2}, seed=1)
    return root


def train_cli(data: Path, home: Path, *extra: str):
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    args = [
        "-m",
        "deepfake_detect.train",
        *tiny_overrides(data, uri, home / "cache"),
        "trainer.epochs=1",
        "tracking.log_model=false",
        *extra,
    ]
    return uri, run_cli(args, cwd=home)


@pytest.mark.parametrize("model", sorted(SMALLEST))
def test_preset_trains_one_epoch_via_cli(tmp_path, tiny_data, xception_data, model):
    data = xception_data if model == "xception" else tiny_data
    uri, result = train_cli(data, tmp_path, f"model={model}", f"data.image_size={SMALLEST[model]}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = store_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("deepfake_detect").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == model
    history = client.get_metric_history(run.info.run_id, "val_auc")
    assert [m.step for m in history] == [0]
    assert 0.0 <= history[0].value <= 1.0


@pytest.mark.parametrize("model", sorted(SMALLEST))
def test_grad_cam_finds_the_last_conv_of_every_preset(compose_cfg, model):
    from deepfake_detect.inference.gradcam import grad_cam

    size = SMALLEST[model]
    net = instantiate(compose_cfg([f"model={model}"]).model, image_size=size)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    maps = grad_cam(net, images, threshold=0.5)
    assert maps.shape == (2, size, size)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


@pytest.mark.parametrize(
    ("builder", "minimum"),
    [
        (mesonet.build_meso4, mesonet.MIN_IMAGE_SIZE),
        (mesonet.build_mesoinception4, mesonet.MIN_IMAGE_SIZE),
        (xception.build_xception, xception.MIN_IMAGE_SIZE),
    ],
)
def test_too_small_image_size_names_the_key_and_minimum(builder, minimum):
    with pytest.raises(ValueError, match=rf"data\.image_size={minimum - 1}.*at least {minimum}"):
        builder(minimum - 1)


def test_too_small_xception_via_cli_names_the_key(tmp_path, tiny_data):
    _, result = train_cli(tiny_data, tmp_path, "model=xception", "data.image_size=64")
    assert result.returncode == 2  # a config error: one line, no traceback
    assert "data.image_size=64" in result.stderr and "at least 71" in result.stderr
    assert "Traceback" not in result.stderr


def test_xception_missing_weights_file_names_the_key(compose_cfg, tmp_path):
    missing = tmp_path / "nowhere.weights.h5"
    cfg = compose_cfg(["model=xception", f"model.weights={missing}"])
    with pytest.raises(Exception, match=r"model\.weights=") as raised:
        instantiate(cfg.model, image_size=SMALLEST["xception"])
    assert str(missing) in str(raised.value)
