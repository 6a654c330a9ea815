"""A built wheel works without the checkout: packaged configs, outputs under the cwd."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepfake_detect.config.paths import PROJECT_ROOT
from tests.conftest import clean_env, run_cli


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install`` of the built wheel into its own folder (no editable link to the
    checkout), console scripts in ``site-packages/bin``."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: the build writes build/ and egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    shutil.copytree(
        PROJECT_ROOT / "deepfake_detect",
        source / "deepfake_detect",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(source),
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("deepfake_detect-*.whl")
    site = out / "site-packages"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return site


def test_wheel_ships_every_config(installed):
    packaged = {
        p.relative_to(installed / "deepfake_detect" / "conf") for p in installed.rglob("*.yaml")
    }
    source = {
        p.relative_to(PROJECT_ROOT / "deepfake_detect" / "conf")
        for p in (PROJECT_ROOT / "deepfake_detect" / "conf").rglob("*.yaml")
    }
    assert packaged == source and Path("experiment/cnn_baseline.yaml") in packaged


def test_installed_commands_run_from_another_directory(installed, tmp_path):
    env = {"PYTHONPATH": str(installed)}
    result = run_cli(
        ["-c", "import deepfake_detect; print(deepfake_detect.__file__)"], cwd=tmp_path, env=env
    )
    assert result.stdout.startswith(str(installed)), result.stdout + result.stderr
    train = [str(installed / "bin" / "deepfake-train")]  # the installed console scripts
    result = subprocess.run(
        [*train, "experiment=cnn_reid", "--cfg", "job", "--resolve"],
        cwd=tmp_path,
        env=clean_env(env),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["model"]["name"] == "cnn_reid"
    assert Path(cfg["paths"]["root"]) == tmp_path.resolve()  # the project is the cwd
    assert Path(cfg["data"]["cache_dir"]).is_relative_to(tmp_path.resolve())
    result = subprocess.run(
        [str(installed / "bin" / "deepfake-detect"), "leaderboard", "--help"],
        cwd=tmp_path,
        env=clean_env(env),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "--select" in result.stdout
    assert not list(installed.rglob("mlruns")) and not list(installed.rglob("logs"))
