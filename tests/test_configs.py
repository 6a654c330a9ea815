"""Every config group choice composes and instantiates; presets compose from anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from deepfake_detect.config.paths import PROJECT_ROOT
from deepfake_detect.models import xception
from tests.conftest import CONF_DIR, run_cli

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
OPTIMIZERS = sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
# The smallest image each model accepts where its topology needs more than the 32 px default.
MIN_IMAGE_SIZE = {"xception": xception.MIN_IMAGE_SIZE}


def test_groups_are_discovered():
    assert {"cnn_baseline", "cnn_reid", "model_1", "efficientnetv2_b0"} <= set(MODELS)
    assert {"meso4", "mesoinception4", "xception"} <= set(MODELS)
    assert {"adam", "sgd", "adamw"} <= set(OPTIMIZERS)
    assert set(EXPERIMENTS) == {
        "cnn_baseline",
        "cnn_reid",
        "model_1",
        "efficientnetv2_b0_retrain",
        "meso4",
        "mesoinception4",
        "xception",
    }


@pytest.mark.parametrize("model", MODELS)
def test_every_model_builds_with_float32_sigmoid_output(compose_cfg, model):
    size = MIN_IMAGE_SIZE.get(model, 32)
    cfg = compose_cfg([f"model={model}", "model.dropout=0.25", f"data.image_size={size}"])
    assert cfg.model.dropout == 0.25
    net = instantiate(cfg.model, image_size=size)
    assert net.output_shape == (None, 1)
    assert net.layers[-1].dtype_policy.compute_dtype == "float32"
    dropouts = [layer.rate for layer in net.layers if layer.__class__.__name__ == "Dropout"]
    assert dropouts and all(rate == 0.25 for rate in dropouts)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_instantiates_with_lr(compose_cfg, optimizer):
    cfg = compose_cfg([f"optimizer={optimizer}", "optimizer.lr=0.0123"])
    built = instantiate(cfg.optimizer)
    assert float(built.learning_rate.numpy()) == pytest.approx(0.0123)


@pytest.mark.parametrize("choice", ["synthetic", "deepfake_faces"])
def test_data_choices_compose(compose_cfg, choice):
    cfg = compose_cfg([f"data={choice}", "data.root=/somewhere"])
    assert cfg.data.positive_class == "Fake"
    assert cfg.data.splits.val == "Validation"


def test_tracking_server_choice_points_at_http(compose_cfg):
    cfg = compose_cfg(["tracking=server", "tracking.port=5123"])
    assert cfg.tracking.uri == "http://127.0.0.1:5123"


def test_callbacks_instantiate(compose_cfg):
    cfg = compose_cfg(["experiment=cnn_baseline"])
    callback = instantiate(cfg.trainer.callbacks.reduce_lr_on_plateau)
    assert (callback.factor, callback.patience, callback.min_lr) == (0.2, 5, 0.0005)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_presets_compose(compose_cfg, experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.trainer.epochs == 20
    assert cfg.data.image_size == 256


def test_baseline_preset_matches_the_seed(compose_cfg):
    cfg = compose_cfg(["experiment=cnn_baseline"])
    assert (cfg.model.name, cfg.optimizer.lr, cfg.trainer.batch_size) == ("cnn_baseline", 0.005, 64)
    assert cfg.model.dropout == 0.3


def test_paths_are_anchored_at_project_root(compose_cfg):
    cfg = compose_cfg([])
    assert Path(cfg.paths.root) == PROJECT_ROOT
    assert Path(cfg.data.root) == PROJECT_ROOT / "data" / "synthetic"


def test_preset_selectable_from_another_cwd_and_no_outputs_there(tmp_path):
    result = run_cli(
        ["-m", "deepfake_detect.train", "experiment=cnn_reid", "--cfg", "job"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "name: cnn_reid" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("override", "group", "choice"),
    [
        ("model=resnet", "model/resnet", "cnn_baseline"),
        ("optimizer=rmsprop", "optimizer/rmsprop", "adamw"),
    ],
)
def test_unknown_choice_lists_valid_ones(tmp_path, override, group, choice):
    result = run_cli(["-m", "deepfake_detect.train", override, "--cfg", "job"], cwd=tmp_path)
    assert result.returncode != 0
    assert f"Could not find '{group}'" in result.stderr
    assert choice in result.stderr


def test_typo_in_key_is_rejected(tmp_path):
    result = run_cli(
        ["-m", "deepfake_detect.train", "model.dropuot=0.2", "--cfg", "job"], cwd=tmp_path
    )
    assert result.returncode != 0
    assert "dropuot" in result.stderr
