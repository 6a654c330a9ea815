"""A real ``mlflow server`` subprocess, a run logged over HTTP, and a real headless browser."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.config.paths import RESULTS_DIR
from deepfake_detect.tracking.store import store_client
from deepfake_detect.tracking.vocabulary import EPOCH_KEYS, TEST_KEYS
from deepfake_detect.training.main import run_training
from tests.conftest import mlflow_server, run_cli

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = RESULTS_DIR / "test-artifacts"


def request(url: str, body: dict | None = None, host: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            payload = response.read()
            is_json = response.headers.get_content_type() == "application/json"
            return response.status, json.loads(payload) if is_json and payload else {}
    except urllib.error.HTTPError as error:
        return error.code, {}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on a free loopback port with a temp SQLite store; always stopped."""
    with mlflow_server(tmp_path_factory.mktemp("server")) as url:
        yield url


PRINTED: list[str] = []  # what the fixture's training printed


@pytest.fixture(scope="module")
def http_run(server, tiny_data, tmp_path_factory):
    """One tiny 1-epoch training logged through the server; returns (url, experiment, run)."""
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR, tiny_overrides

    cache = tmp_path_factory.mktemp("cache")
    # credentials in the URI (a server behind basic auth): they must never be recorded
    with_password = server.replace("http://", "http://alice:s3cret@")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            tiny_overrides(tiny_data, with_password, cache)
            + ["trainer.epochs=1", "tracking.experiment=served"],
        )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_training(cfg)
    PRINTED.append(printed.getvalue())
    status, found = request(
        f"{server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=served"
    )
    assert status == 200
    experiment_id = found["experiment"]["experiment_id"]
    status, runs = request(
        f"{server}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]}
    )
    assert status == 200 and len(runs["runs"]) == 1
    return server, experiment_id, runs["runs"][0]


def test_run_logged_over_http_is_complete(http_run):
    url, _, run = http_run
    run_id = run["info"]["run_id"]
    assert run["info"]["status"] == "FINISHED"
    for key in [*EPOCH_KEYS, "lr"]:
        status, history = request(
            f"{url}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}"
        )
        assert status == 200 and [m.get("step", 0) for m in history["metrics"]] == [0], key
    logged = {m["key"] for m in run["data"]["metrics"]}
    assert set(TEST_KEYS) <= logged
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["model.dropout"] == "0.3" and "optimizer.lr" in params
    status, listing = request(f"{url}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=plots")
    assert status == 200
    assert "plots/roc_val.png" in {f["path"] for f in listing["files"]}
    status, versions = request(
        f"{url}/api/2.0/mlflow/model-versions/search?filter=name%3D%27deepfake-detector%27"
    )
    assert status == 200 and versions["model_versions"][0]["run_id"] == run_id


def test_a_password_in_the_tracking_uri_is_never_recorded(http_run, tmp_path):
    """Params, tags, the config artifact and stdout show ``alice:***@``, never the password."""
    url, _, run = http_run
    run_id = run["info"]["run_id"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["tracking.uri"] == url.replace("http://", "http://alice:***@")
    recorded = json.dumps(run) + PRINTED[0]
    config = MlflowClient(url).download_artifacts(run_id, "config/config.yaml", str(tmp_path))
    recorded += Path(config).read_text()
    assert "s3cret" not in recorded
    assert "alice:***@" in Path(config).read_text() and "alice:***@" in PRINTED[0]


def test_model_downloads_through_the_server(http_run):
    import mlflow
    import numpy as np

    url, _, _ = http_run
    mlflow.set_tracking_uri(url)
    model = mlflow.keras.load_model("models:/deepfake-detector/1")
    assert model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 1)


def test_foreign_host_header_is_refused(server):
    status, _ = request(
        f"{server}/api/2.0/mlflow/experiments/search", {"max_results": 1}, host="evil.example.com"
    )
    assert status == 403
    assert request(f"{server}/api/2.0/mlflow/experiments/search", {"max_results": 1})[0] == 200


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: `make chromium` installs it")
def test_browser_shows_run_and_metric(http_run, tmp_path):
    from playwright.sync_api import sync_playwright

    url, experiment_id, run = http_run
    run_name, run_id = run["info"]["run_name"], run["info"]["run_id"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
    ]
    with sync_playwright() as playwright:
        # a fresh --user-data-dir: Playwright passes it for a persistent context
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=args,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        page = browser.new_page()
        try:
            page.goto(f"{url}/#/experiments/{experiment_id}/runs")
            page.get_by_text(run_name).first.wait_for(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "experiment_page.png"))
            page.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}")
            page.get_by_text("val_auc").first.wait_for(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "run_page.png"), full_page=True)
            assert run_name in page.content()
        finally:
            page.screenshot(path=str(SCREENSHOTS / "last_page.png"))
            browser.close()


def test_leaderboard_over_http(http_run, tmp_path):
    from deepfake_detect.commands.cli import main

    url, _, run = http_run
    out = tmp_path / "lb.csv"
    assert main(["leaderboard", "--tracking-uri", url, "--out", str(out), "--no-chart"]) == 0
    header, row = out.read_text().splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert values["run_id"] == run["info"]["run_id"]
    assert all(values[key] != "" for key in [*EPOCH_KEYS, *TEST_KEYS])


@pytest.mark.training
def test_killed_run_resumes_from_the_servers_checkpoint(server, tiny_data, tmp_path):
    """With a tracking server the checkpoint is mirrored to the run's artifacts, so a machine
    without the local copy resumes the run; the mirror is removed when the run finishes."""
    from tests.conftest import run_cli, tiny_overrides
    from tests.test_long_runs import signal_once

    args = [
        "-m",
        "deepfake_detect.train",
        *tiny_overrides(tiny_data, server, tmp_path / "cache"),
        "tracking.experiment=resumed",
        "registry.register=false",
        "trainer.epochs=3",
        *signal_once(tmp_path / "signalled", epoch=2),
    ]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 143, first.stderr[-3000:]
    client = store_client(server)
    experiment = client.get_experiment_by_name("resumed").experiment_id
    (run,) = client.search_runs([experiment])
    run_id = run.info.run_id
    mirrored = {a.path for a in client.list_artifacts(run_id, "checkpoint")}
    assert mirrored == {"checkpoint/LATEST", "checkpoint/epoch-0001"}
    shutil.rmtree(tmp_path / "logs" / "checkpoints")  # another machine: no local copy

    second = run_cli([*args, f"trainer.resume={run_id}"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_auc")] == [0, 1, 2]
    assert client.list_artifacts(run_id, "checkpoint") == []


def test_a_sweep_never_records_a_password_hydra_saw(server, tmp_path):
    """Hydra saves and logs the command line itself (``.hydra/*.yaml``, ``multirun.yaml``, the
    launcher's job lines): all redacted. The jobs fail fast on a missing data folder, after the
    sweep parent, Hydra's files and the job runs exist."""
    with_password = server.replace("http://", "http://alice:s3cret@")
    result = run_cli(
        ["-m", "deepfake_detect.train", "-m", "model.dropout=0.1,0.2"]
        + [f"tracking.uri={with_password}", "tracking.experiment=redacted"]
        + [f"data.root={tmp_path / 'missing'}", f"paths.log_dir={tmp_path / 'logs'}"],
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # all jobs failed
    assert "alice:***@" in result.stdout + result.stderr
    saved = list((tmp_path / "logs").rglob("*.yaml")) + list((tmp_path / "logs").rglob("*.log"))
    assert {path.name for path in saved} >= {"multirun.yaml", "overrides.yaml", "config.yaml"}
    recorded = result.stdout + result.stderr + "".join(p.read_text() for p in saved)
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("redacted")
    for run in client.search_runs([experiment.experiment_id]):
        recorded += json.dumps([run.data.params, run.data.tags])
    assert len(client.search_runs([experiment.experiment_id])) == 3  # parent, two failed jobs
    assert "s3cret" not in recorded
