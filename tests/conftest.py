"""Shared fixtures: tiny synthetic data, temp SQLite stores, composed real configs, CLI runs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from deepfake_detect.config.paths import CONFIG_DIR, PROJECT_ROOT
from deepfake_detect.config.resolvers import register_resolvers
from deepfake_detect.data.synthetic import generate_dataset

register_resolvers()  # the configs the tests compose use ${dfd.*:}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
CONF_DIR = CONFIG_DIR
TINY_SIZE = 32


MLFLOW_ENV_AT_START = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}

# The files that take longest on 2 workers (`make test PYTEST_ARGS=--durations=70`, summed per
# file), longest first. `--dist loadfile` hands files out in collection order, so these start
# first and the many short files fill in at the end: no worker waits alone for a long file.
SLOWEST_FILES_FIRST = (
    "test_long_runs.py",
    "test_cluster.py",
    "test_hardware.py",
    "test_sweeps.py",
    "test_registry.py",
    "test_reproduce.py",
    "test_detector_zoo.py",
    "test_server_ui.py",
    "test_evaluation_protocol.py",
    "test_pruning.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slowest files first (stable: the order inside a file stays as written)."""
    gone = [name for name in SLOWEST_FILES_FIRST if not (Path(__file__).parent / name).is_file()]
    if gone:
        raise pytest.UsageError(f"SLOWEST_FILES_FIRST in {__file__} names no file {gone}: fix it")
    rank = {name: index for index, name in enumerate(SLOWEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def no_leftover_mlflow_state():
    """No test may pass through MLflow state an earlier test (or a module fixture) left: after
    each test, end any active run and put the process-global tracking/registry URIs and the
    ``MLFLOW_*`` variables MLflow's setters export back to how the session started."""
    yield
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    while mlflow.active_run():
        mlflow.end_run()
    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        os.environ.pop(key)
    os.environ.update(MLFLOW_ENV_AT_START)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 px synthetic dataset: 16 train, 8 val, 8 test images per class."""
    root = tmp_path_factory.mktemp("tiny_data")
    generate_dataset(root, TINY_SIZE, {"Train": 16, "Validation": 8, "Test": 8}, seed=1)
    return root


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    """A fresh SQLite tracking store in a temp folder."""
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def tiny_overrides(data_root: Path, uri: str, cache_dir: Path) -> list[str]:
    """Overrides that make any run tiny and point it at a temp store and cache."""
    return [
        f"data.root={data_root}",
        f"data.image_size={TINY_SIZE}",
        f"data.cache_dir={cache_dir}",
        f"tracking.uri={uri}",
        f"paths.log_dir={cache_dir.parent / 'logs'}",  # Hydra's run folders: not in the checkout
        "trainer.epochs=2",
        "trainer.batch_size=8",
        "trainer.verbose=0",
    ]


@pytest.fixture
def compose_cfg() -> Callable[[Sequence[str]], DictConfig]:
    """Compose the real packaged ``conf/train.yaml`` with overrides."""

    def _compose(overrides: Sequence[str]) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))

    return _compose


@pytest.fixture
def tiny_cfg(compose_cfg, tiny_data: Path, store_uri: str, tmp_path: Path):
    """Compose with the tiny overrides plus extra ones."""

    def _cfg(*extra: str) -> DictConfig:
        return compose_cfg(tiny_overrides(tiny_data, store_uri, tmp_path / "cache") + list(extra))

    return _cfg


def clean_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of a user's fresh shell: no ``MLFLOW_*`` variables, quiet TensorFlow,
    the project root importable (for ``tests.helpers`` callbacks)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.pop("DEEPFAKE_DETECT_HOME", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return {**env, **(extra or {})}


def run_cli(
    args: Sequence[str], cwd: Path = PROJECT_ROOT, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run a Python module/CLI of this project in a subprocess with a clean environment."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def detect(args: Sequence[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``deepfake-detect ARGS`` in a subprocess (cwd outside the project in loading tests)."""
    return run_cli(["-m", "deepfake_detect.commands.cli", *args], cwd=cwd, env=env)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 3 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path, *extra: str, env: dict | None = None) -> Iterator[str]:
    """``mlflow server`` on a free loopback port over a temp SQLite store and artifact folder
    in ``folder``; yields its URL once /health answers, and always stops it."""
    import signal
    import time
    import urllib.request

    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", *extra]
        + ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
        + ["--artifacts-destination", str(folder / "artifacts")]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited: {(folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start in 60 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
